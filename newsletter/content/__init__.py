"""Content: articles (Markdown files or imported feed items), sanitising, issue manifests and the
YAML they are written in. Everything here is data read from files; nothing renders or sends.

    manifest (issues/<edition>.yaml) ──load_manifest──► Edition ──► one VariantSpec per segment
"""

from newsletter.content.articles import (
    Article,
    article_text,
    filter_articles,
    load_article,
    load_articles,
    new_article,
    parse_article,
    write_article,
)
from newsletter.content.feeds import FeedOutcomes, ImportOutcome, import_feed, import_feed_data
from newsletter.content.manifest import (
    Edition,
    KnownSegments,
    VariantSpec,
    analyse_manifest,
    check_manifest,
    load_manifest,
)
from newsletter.content.manifest_fields import TEMPLATE_ENTRY
from newsletter.content.sanitize import check_url, clean_html, fragment_to_text, html_to_markdown
from newsletter.content.send_times import (
    SendWindow,
    describe,
    localise,
    parse_send_time,
    require_future,
    zone,
)
from newsletter.content.yaml_source import PathKey, YamlDocument, load_yaml, parse_yaml

__all__ = [
    "TEMPLATE_ENTRY",
    "Article",
    "Edition",
    "FeedOutcomes",
    "ImportOutcome",
    "KnownSegments",
    "PathKey",
    "SendWindow",
    "VariantSpec",
    "YamlDocument",
    "analyse_manifest",
    "article_text",
    "check_manifest",
    "check_url",
    "clean_html",
    "describe",
    "filter_articles",
    "fragment_to_text",
    "html_to_markdown",
    "import_feed",
    "import_feed_data",
    "load_article",
    "load_articles",
    "load_manifest",
    "load_yaml",
    "new_article",
    "localise",
    "parse_article",
    "parse_send_time",
    "parse_yaml",
    "require_future",
    "write_article",
    "zone",
]
