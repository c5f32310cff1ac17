"""Rendering: an Edition's variants, each rendered once (Jinja2 → MJML → HTML → inlined CSS → text),
gated, and written as a build (`<segment>.html/.txt/.eml` + `build.json`); the preview page.

Per-recipient values stay placeholders (`-first_name-` …); rendering knows nothing of members or
of sending. A build is read back only through `load_build`, which parses build.json with the one
build record model (`BuildRecord`).
"""

from newsletter.render.build import (
    BUILD_JSON,
    Build,
    BuildGateFailed,
    Inputs,
    build_edition,
    build_from_edition,
    build_inputs,
    changed_inputs,
    inputs_fingerprint,
    load_build,
)
from newsletter.render.eml import list_id, list_unsubscribe, preview_message, unsubscribe_mailbox
from newsletter.render.gates import GateReport, check_html
from newsletter.render.pipeline import (
    RenderedVariant,
    StageTimings,
    Template,
    load_template,
    render_variant,
)
from newsletter.render.placeholders import (
    HTML_TOKENS,
    SAMPLE_RECIPIENT,
    TEXT_TOKENS,
    SampleRecipient,
    sample_values,
    substitute,
    substitution_values,
)
from newsletter.render.plaintext import html_to_text
from newsletter.render.preview import render_preview, serve_preview, write_preview
from newsletter.render.record import BuildRecord, VariantRecord

__all__ = [
    "BUILD_JSON",
    "HTML_TOKENS",
    "SAMPLE_RECIPIENT",
    "TEXT_TOKENS",
    "Build",
    "BuildGateFailed",
    "BuildRecord",
    "GateReport",
    "Inputs",
    "RenderedVariant",
    "SampleRecipient",
    "StageTimings",
    "Template",
    "VariantRecord",
    "build_edition",
    "build_from_edition",
    "build_inputs",
    "changed_inputs",
    "check_html",
    "html_to_text",
    "inputs_fingerprint",
    "list_id",
    "list_unsubscribe",
    "load_build",
    "load_template",
    "preview_message",
    "render_preview",
    "render_variant",
    "sample_values",
    "serve_preview",
    "substitute",
    "substitution_values",
    "unsubscribe_mailbox",
    "write_preview",
]
