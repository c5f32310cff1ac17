"""Content: articles (Markdown files or imported feed items), sanitising, issue manifests and the
YAML they are written in. Everything here is data read from files; nothing renders or sends.

    manifest (issues/<edition>.yaml) ──load_manifest──► Edition ──► one VariantSpec per segment

Every YAML file a person writes is read by load_yaml (positions; limits that stop hostile files)
and checked by a YamlModel through validate_yaml (errors as file:line:col problems); the field
types here are shared with the member store's segments.yaml.
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
from newsletter.content.digest_definition import (
    DIGESTS_DIR,
    Digest,
    analyse_digest,
    digest_paths,
    load_digest,
)
from newsletter.content.digest_manifest import (
    SegmentPick,
    Selection,
    long_date,
    manifest_text,
    pick_articles,
    select_new,
)
from newsletter.content.feeds import FeedOutcomes, ImportOutcome, import_feed, import_feed_data
from newsletter.content.field_types import Region, RegionList, SegmentName, Text, TextList, as_date, region_slug
from newsletter.content.manifest import (
    TEMPLATE_ENTRY,
    Edition,
    KnownSegments,
    VariantSpec,
    analyse_manifest,
    check_manifest,
    load_manifest,
)
from newsletter.content.sanitize import check_url, clean_html, fragment_to_text, html_to_markdown
from newsletter.content.send_times import (
    SendWindow,
    describe,
    localise,
    pad_hour,
    parse_send_time,
    read_send_time,
    require_future,
    zone,
)
from newsletter.content.yaml_source import PathKey, YamlDocument, load_yaml, parse_yaml
from newsletter.content.yaml_validation import FieldProblem, Validated, YamlModel, shown, suggest, validate_yaml

__all__ = [
    "DIGESTS_DIR",
    "TEMPLATE_ENTRY",
    "Article",
    "as_date",
    "Digest",
    "Edition",
    "FeedOutcomes",
    "FieldProblem",
    "ImportOutcome",
    "KnownSegments",
    "PathKey",
    "SegmentPick",
    "Selection",
    "Region",
    "RegionList",
    "SegmentName",
    "SendWindow",
    "Text",
    "TextList",
    "Validated",
    "VariantSpec",
    "YamlDocument",
    "YamlModel",
    "analyse_digest",
    "analyse_manifest",
    "article_text",
    "check_manifest",
    "check_url",
    "clean_html",
    "describe",
    "digest_paths",
    "filter_articles",
    "fragment_to_text",
    "html_to_markdown",
    "import_feed",
    "import_feed_data",
    "load_article",
    "load_digest",
    "load_articles",
    "load_manifest",
    "load_yaml",
    "new_article",
    "localise",
    "long_date",
    "manifest_text",
    "pad_hour",
    "parse_article",
    "pick_articles",
    "parse_send_time",
    "parse_yaml",
    "read_send_time",
    "region_slug",
    "require_future",
    "select_new",
    "shown",
    "suggest",
    "validate_yaml",
    "write_article",
    "zone",
]
