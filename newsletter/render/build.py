"""Building an edition: render every variant once, gate it, write .html/.txt/.eml and build.json.

    DIR/<segment>.html   inlined HTML with per-recipient tokens (-first_name-, -unsubscribe_url- ...)
    DIR/<segment>.txt    plain-text part, same tokens
    DIR/<segment>.eml    multipart/alternative preview with a sample member's values filled in
    DIR/build.json       edition, per-variant hashes, sizes, articles, send times, gate results

No timestamps anywhere: the same inputs give byte-identical files. Gates that FAIL raise
GateFailed after everything is written, so the output can be inspected.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from newsletter import __version__
from newsletter.config import Settings
from newsletter.content import KnownSegments, load_manifest
from newsletter.errors import GateFailed, NotFound
from newsletter.render.eml import preview_message
from newsletter.render.gates import GateReport, check_html
from newsletter.render.pipeline import (
    StageTimings,
    Template,
    load_template,
    render_variant,
    template_settings,
    template_sha256,
)

BUILD_JSON = "build.json"
PIPELINE_PACKAGES = ("mjml-python", "premailer", "cssutils", "jinja2", "markdown-it-py", "lxml")


@dataclass(frozen=True)
class VariantBuild:
    """One built variant (what build.json records, plus paths and the HTML/text themselves)."""

    segment: str
    subject: str
    preheader: str
    from_name: str
    from_email: str
    html_path: Path
    text_path: Path
    eml_path: Path
    sha256: str
    text_sha256: str
    size: int
    articles: tuple[str, ...]
    send_at: datetime | None
    zone: str
    gates: GateReport
    html: str = field(repr=False, default="")
    text: str = field(repr=False, default="")

    def as_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject, "preheader": self.preheader,
            "from_name": self.from_name, "from_email": self.from_email,
            "html": self.html_path.name, "text": self.text_path.name, "eml": self.eml_path.name,
            "sha256": self.sha256, "text_sha256": self.text_sha256, "size": self.size,
            "articles": list(self.articles),
            "send_at": self.send_at.isoformat() if self.send_at else None, "zone": self.zone,
            "gates": self.gates.as_dict(),
        }


@dataclass(frozen=True)
class BuildResult:
    edition_id: str
    title: str
    template: str
    out_dir: Path
    template_sha256: str
    inputs_sha256: str
    variants: tuple[VariantBuild, ...]
    timings: StageTimings = field(default_factory=StageTimings, compare=False)

    @property
    def failed(self) -> list[str]:
        return [v.segment for v in self.variants if v.gates.failed]

    def variant(self, segment: str) -> VariantBuild:
        for v in self.variants:
            if v.segment == segment:
                return v
        raise NotFound(f"no variant {segment!r} in edition {self.edition_id}")


# A build as read back from disk has exactly the same shape.
BuildInfo = BuildResult


class BuildGateFailed(GateFailed):
    """GateFailed carrying the (fully written) build, so callers can still show it."""

    def __init__(self, result: BuildResult) -> None:
        lines = [f"{v.segment}: {'; '.join(v.gates.failed)}" for v in result.variants if v.gates.failed]
        super().__init__(
            f"{len(lines)} variant(s) failed the quality gates:\n" + "\n".join(lines),
            hint=f"the files are in {result.out_dir} for inspection",
        )
        self.result = result


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fingerprint(edition: Any, settings: Settings, template: Template) -> str:
    """sha256 over everything that changes the output (see inputs_fingerprint)."""
    digest = hashlib.sha256()

    def part(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    part("manifest", Path(edition.manifest_path).read_bytes())
    slugs: set[str] = set()
    for v in edition.variants:
        slugs.update(a.slug for a in v.articles)
        if v.featured:
            slugs.add(v.featured.slug)
    article_dir = Path(edition.manifest_path).parent / "articles"
    for slug in sorted(slugs):
        path = article_dir / f"{slug}.md"
        part(f"article:{slug}", path.read_bytes() if path.is_file() else b"")
    part("template", template_sha256(template.directory).encode())
    part("settings", json.dumps(template_settings(settings), sort_keys=True).encode())
    part("pipeline", _pipeline_versions().encode())
    return digest.hexdigest()


@lru_cache(maxsize=1)
def _pipeline_versions() -> str:
    versions = {"newsletter": __version__}
    for name in PIPELINE_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return json.dumps(versions, sort_keys=True)


def inputs_fingerprint(manifest_path: Path, settings: Settings) -> str:
    """sha256 over the manifest bytes, the article files it uses, the template directory's files,
    the settings used by the template and the versions of the rendering pipeline."""

    edition = load_manifest(manifest_path, settings)
    return _fingerprint(edition, settings, load_template(settings, edition.template))


def _message_id(edition_id: str, segment: str, from_email: str) -> str:
    domain = from_email.rpartition("@")[2] or "localhost"
    return f"<{edition_id}.{segment}@{domain}>"


def build_from_edition(edition: Any, settings: Settings, out_dir: Path | None = None) -> BuildResult:
    """Render, gate and write every variant of a loaded edition. Raises BuildGateFailed (a
    GateFailed) after writing everything when any variant fails a gate."""
    template = load_template(settings, edition.template)
    out = Path(out_dir) if out_dir else settings.project_dir / "build" / edition.id
    out.mkdir(parents=True, exist_ok=True)
    variants: list[VariantBuild] = []
    timings = StageTimings()
    for spec in edition.variants:
        rendered = render_variant(template, edition, spec, settings)
        timings = timings + rendered.timings
        html_bytes = rendered.html.encode("utf-8")
        text_bytes = rendered.text.encode("utf-8")
        paths = {ext: out / f"{spec.segment}.{ext}" for ext in ("html", "txt", "eml")}
        paths["html"].write_bytes(html_bytes)
        paths["txt"].write_bytes(text_bytes)
        send_at = spec.send_at
        paths["eml"].write_bytes(preview_message(
            html=rendered.html, text=rendered.text, subject=spec.subject,
            from_name=settings.from_name, from_email=settings.from_email,
            reply_to=settings.reply_to, public_base_url=settings.public_base_url,
            message_id=_message_id(edition.id, spec.segment, settings.from_email), date=send_at,
        ))
        slugs = ((spec.featured.slug,) if spec.featured else ()) + tuple(a.slug for a in spec.articles)
        variants.append(VariantBuild(
            segment=spec.segment, subject=spec.subject, preheader=spec.preheader,
            from_name=settings.from_name, from_email=settings.from_email,
            html_path=paths["html"], text_path=paths["txt"], eml_path=paths["eml"],
            sha256=_sha(html_bytes), text_sha256=_sha(text_bytes), size=len(html_bytes),
            articles=slugs, send_at=send_at, zone=spec.zone, gates=check_html(rendered.html),
            html=rendered.html, text=rendered.text,
        ))
    result = BuildResult(
        edition_id=edition.id, title=edition.title, template=edition.template, out_dir=out,
        template_sha256=template_sha256(template.directory),
        inputs_sha256=_fingerprint(edition, settings, template),
        variants=tuple(variants), timings=timings,
    )
    (out / BUILD_JSON).write_text(build_json(result), "utf-8")
    if result.failed:
        raise BuildGateFailed(result)
    return result


def build_json(result: BuildResult) -> str:
    data = {
        "edition": result.edition_id, "title": result.title, "template": result.template,
        "template_sha256": result.template_sha256, "inputs_sha256": result.inputs_sha256,
        "variants": {v.segment: v.as_json() for v in result.variants},
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def build_edition(
    manifest_path: Path, settings: Settings, out_dir: Path | None = None, *, segments: KnownSegments | None = None
) -> BuildResult:
    """Build the edition of a manifest into out_dir (default: <project>/build/<edition id>).
    Raises ManifestError on a bad manifest, InputError on a missing template, and GateFailed
    (after writing everything) when any variant fails a gate."""

    edition = load_manifest(Path(manifest_path), settings, segments)
    return build_from_edition(edition, settings, out_dir)


def load_build(build_dir: Path) -> BuildInfo:
    """A build read back from build.json; every .html/.txt is re-hashed. Raises GateFailed when
    build.json or a file is missing, a file no longer matches its recorded hash, or a variant
    failed its gates when built."""
    build_dir = Path(build_dir)
    manifest = build_dir / BUILD_JSON
    hint = "rebuild with `newsletter build MANIFEST`"
    try:
        data = json.loads(manifest.read_text("utf-8"))
        entries = data["variants"]
    except FileNotFoundError:
        raise GateFailed(f"{manifest} not found: {build_dir} is not a build", hint=hint) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise GateFailed(f"{manifest} is not a valid build record ({exc})", hint=hint) from None
    variants = []
    for segment, v in entries.items():
        html_path, text_path = build_dir / v["html"], build_dir / v["text"]
        try:
            html_bytes, text_bytes = html_path.read_bytes(), text_path.read_bytes()
        except FileNotFoundError as exc:
            raise GateFailed(f"{exc.filename} is missing from the build", hint=hint) from None
        for path, data_bytes, recorded in ((html_path, html_bytes, v["sha256"]),
                                           (text_path, text_bytes, v["text_sha256"])):
            if _sha(data_bytes) != recorded:
                raise GateFailed(f"{path} was changed after the build (sha256 mismatch)", hint=hint)
        gates = GateReport(list(v["gates"]["failed"]), list(v["gates"]["warnings"]))
        if gates.failed:
            raise GateFailed(f"{segment} failed the quality gates when built: "
                             + "; ".join(gates.failed), hint="fix the inputs and rebuild")
        variants.append(VariantBuild(
            segment=segment, subject=v["subject"], preheader=v["preheader"],
            from_name=v["from_name"], from_email=v["from_email"],
            html_path=html_path, text_path=text_path, eml_path=build_dir / v["eml"],
            sha256=v["sha256"], text_sha256=v["text_sha256"], size=v["size"],
            articles=tuple(v["articles"]),
            send_at=datetime.fromisoformat(v["send_at"]) if v["send_at"] else None, zone=v["zone"],
            gates=gates, html=html_bytes.decode("utf-8"), text=text_bytes.decode("utf-8"),
        ))
    return BuildResult(
        edition_id=data["edition"], title=data["title"], template=data["template"],
        out_dir=build_dir, template_sha256=data["template_sha256"],
        inputs_sha256=data["inputs_sha256"], variants=tuple(variants),
    )
