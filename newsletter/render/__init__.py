"""Rendering: an Edition's variants, each rendered once (Jinja2 → MJML → HTML → inlined CSS → text),
gated, and written as a build (`<segment>.html/.txt/.eml` + `build.json`); the preview page.

Per-recipient values stay placeholders (`-first_name-` …); rendering knows nothing of members or
of sending.
"""

from newsletter.render.build import (
    BUILD_JSON,
    BuildGateFailed,
    BuildResult,
    VariantBuild,
    build_edition,
    build_from_edition,
    inputs_fingerprint,
    load_build,
)
from newsletter.render.eml import SampleRecipient, preview_message
from newsletter.render.gates import GateReport, check_html
from newsletter.render.pipeline import (
    RenderedVariant,
    StageTimings,
    Template,
    load_template,
    render_variant,
)
from newsletter.render.placeholders import HTML_TOKENS, TEXT_TOKENS, substitution_values
from newsletter.render.plaintext import html_to_text
from newsletter.render.preview import render_preview, serve_preview, write_preview

__all__ = [
    "BUILD_JSON",
    "HTML_TOKENS",
    "TEXT_TOKENS",
    "BuildGateFailed",
    "BuildResult",
    "GateReport",
    "RenderedVariant",
    "SampleRecipient",
    "StageTimings",
    "Template",
    "VariantBuild",
    "build_edition",
    "build_from_edition",
    "check_html",
    "html_to_text",
    "inputs_fingerprint",
    "load_build",
    "load_template",
    "preview_message",
    "render_preview",
    "render_variant",
    "serve_preview",
    "substitution_values",
    "write_preview",
]
