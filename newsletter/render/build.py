"""Building an edition: render every variant once, gate it, write .html/.txt/.eml and build.json.

    DIR/<segment>.html   inlined HTML with per-recipient tokens (-first_name-, -unsubscribe_url- ...)
    DIR/<segment>.txt    plain-text part, same tokens
    DIR/<segment>.eml    multipart/alternative preview with the sample member's values filled in
    DIR/build.json       the build record (newsletter.render.record)

No timestamps anywhere: the same inputs give byte-identical files. Gates that FAIL raise
BuildGateFailed after everything is written, so the output can be inspected.

A build is never changed in place. It is written into a new hidden directory beside DIR
(`.DIR.build-XXXXXXXX`), and DIR, a symbolic link, is then pointed at it in one atomic rename.
Readers resolve DIR once and read every file from that directory, so they see the old complete
build or the new one, never a mix. Builders of the same DIR take a lock (`.DIR.lock`); with
`reuse=True` a builder that finds DIR already built from the same inputs uses that build, so
concurrent first sends of one manifest share one build.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from newsletter import __version__
from newsletter.config import Settings
from newsletter.content import Edition, KnownSegments, load_manifest
from newsletter.errors import GateFailed, InputError
from newsletter.render.eml import list_id, preview_message
from newsletter.render.gates import check_html
from newsletter.render.pipeline import (
    RenderedVariant,
    StageTimings,
    Template,
    load_template,
    render_variant,
    template_settings,
    template_sha256,
)
from newsletter.render.record import BuildRecord, VariantRecord

BUILD_JSON = "build.json"
PIPELINE_PACKAGES = ("mjml-python", "premailer", "cssutils", "jinja2", "markdown-it-py", "lxml", "babel")
STAGE_MARK = ".build-"  # hidden build directories are named .<DIR name>.build-<random>
REBUILD_HINT = "rebuild with `newsletter build MANIFEST`"
WRITER_THREADS = 4  # files of a build written and fsync'd at once


@dataclass(frozen=True)
class Build:
    """A build on disk: its record, the directory its files were read from, and the HTML and text
    of each variant exactly as hashed (so what is sent is what was checked)."""

    out_dir: Path  # as the caller named it (a link to `directory` for builds made here)
    directory: Path  # the real directory every file was read from
    record: BuildRecord
    rendered: Mapping[str, RenderedVariant] = field(repr=False)
    timings: StageTimings = field(default_factory=StageTimings, compare=False)

    @property
    def edition_id(self) -> str:
        return self.record.edition

    @property
    def title(self) -> str:
        return self.record.title

    @property
    def template(self) -> str:
        return self.record.template

    @property
    def inputs_sha256(self) -> str:
        return self.record.inputs_sha256

    @property
    def variants(self) -> tuple[VariantRecord, ...]:
        return self.record.variants

    @property
    def failed(self) -> list[str]:
        return self.record.failed

    def variant(self, segment: str) -> VariantRecord:
        return self.record.variant(segment)

    def html(self, segment: str) -> str:
        return self.rendered[segment].html

    def text(self, segment: str) -> str:
        return self.rendered[segment].text

    def eml_path(self, segment: str) -> Path:
        return self.directory / self.variant(segment).eml_file


class BuildGateFailed(GateFailed):
    """GateFailed carrying the (fully written) build, so callers can still show it."""

    def __init__(self, result: Build) -> None:
        lines = [f"{v.segment}: {'; '.join(v.gates.failed)}" for v in result.variants if v.gates.failed]
        super().__init__(
            f"{len(lines)} variant(s) failed the quality gates:\n" + "\n".join(lines),
            hint=f"the files are in {result.out_dir} for inspection",
        )
        self.result = result


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


TEMPLATE_SETTINGS = "template settings"
RENDERING_PACKAGES = "rendering packages"


@dataclass(frozen=True)
class Inputs:
    """What a build was made from: one sha256 over everything that changes the output (the
    fingerprint), and each input's own sha256 under the name a person knows it by (the manifest
    and article files relative to the project, `templates/<name>/`, the template settings, the
    rendering packages), so a later change can be named file by file."""

    fingerprint: str
    hashes: dict[str, str]


def _shown(path: Path, settings: Settings) -> str:
    try:
        return path.resolve().relative_to(settings.project_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


def _inputs(edition: Edition, settings: Settings, template: Template) -> Inputs:
    """The fingerprint (see inputs_fingerprint) and the per-input hashes."""
    digest = hashlib.sha256()
    hashes: dict[str, str] = {}

    def part(label: str, name: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)
        hashes[name] = _sha(data)

    manifest = Path(edition.manifest_path)
    part("manifest", _shown(manifest, settings), manifest.read_bytes())
    slugs: set[str] = set()
    for v in edition.variants:
        slugs.update(a.slug for a in v.articles)
        if v.featured:
            slugs.add(v.featured.slug)
    article_dir = manifest.parent / "articles"
    for slug in sorted(slugs):
        path = article_dir / f"{slug}.md"
        part(f"article:{slug}", _shown(path, settings), path.read_bytes() if path.is_file() else b"")
    part("template", _shown(template.directory, settings).rstrip("/") + "/",
         template_sha256(template.directory).encode())
    part("settings", TEMPLATE_SETTINGS, json.dumps(template_settings(settings), sort_keys=True).encode())
    part("pipeline", RENDERING_PACKAGES, _pipeline_versions().encode())
    return Inputs(digest.hexdigest(), dict(sorted(hashes.items())))


def changed_inputs(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """What differs between two sets of per-input hashes, as `issues/articles/x.md changed`
    (or `added`, `removed`), in name order."""
    changes = []
    for name in sorted(set(before) | set(after)):
        if name not in before:
            changes.append(f"{name} added")
        elif name not in after:
            changes.append(f"{name} removed")
        elif before[name] != after[name]:
            changes.append(f"{name} changed")
    return changes


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

    return build_inputs(manifest_path, settings).fingerprint


def build_inputs(manifest_path: Path, settings: Settings) -> Inputs:
    """The fingerprint and per-input hashes a build of this manifest would record now."""
    edition = load_manifest(manifest_path, settings)
    return _inputs(edition, settings, load_template(settings, edition.template))


def _message_id(edition_id: str, segment: str, from_email: str) -> str:
    domain = from_email.rpartition("@")[2] or "localhost"
    return f"<{edition_id}.{segment}@{domain}>"


# --- writing -------------------------------------------------------------------------------


def _refuse_foreign_target(out: Path) -> None:
    """DIR is replaced as a whole, so it must be a build (or new, or empty): never a user's folder."""
    if out.is_symlink() or not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"{out} exists and is not a directory", hint="choose another --out")
    if any(out.iterdir()) and not (out / BUILD_JSON).is_file():
        raise InputError(f"{out} exists and is not a build (no {BUILD_JSON}); it would be replaced",
                         hint="choose a new or empty directory for --out")


def _refuse_unsafe_names(edition: Edition) -> None:
    """A variant's files are DIR/<segment>.html/.txt/.eml. Manifests only allow slugs as segment
    names; this refuses anything else again, so no name can make a build write outside DIR."""
    for spec in edition.variants:
        name = spec.segment
        if not name or name.startswith(".") or any(c in name for c in "/\\\0") or Path(name).name != name:
            raise InputError(f"segment name {name!r} would write outside the build directory",
                             hint="segment names are slugs: lower-case letters, digits and hyphens")


@contextmanager
def _build_lock(out: Path) -> Iterator[None]:
    """One builder of DIR at a time (other processes wait here)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out.parent / f".{out.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write(path: Path, data: bytes) -> None:
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _publish(staged: Path, out: Path) -> None:
    """Point DIR at the complete staged directory in one rename, then remove builds no reader
    can still be using (all but the new one and the one it replaced)."""
    previous = os.readlink(out) if out.is_symlink() else None
    link = out.parent / f".{out.name}.link-{secrets.token_hex(4)}"
    os.symlink(staged.name, link)
    if out.is_dir() and not out.is_symlink():  # a build from before builds were linked: move it aside
        previous = f".{out.name}{STAGE_MARK}{secrets.token_hex(4)}"
        os.rename(out, out.parent / previous)
    os.replace(link, out)
    dir_fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    keep = {staged.name, previous}
    for stale in out.parent.glob(f".{out.name}{STAGE_MARK}*"):
        if stale.name not in keep:
            shutil.rmtree(stale, ignore_errors=True)


def _render_into(edition: Edition, settings: Settings, template: Template, inputs: Inputs,
                 out: Path) -> Build:
    staged = out.parent / f".{out.name}{STAGE_MARK}{secrets.token_hex(4)}"
    staged.mkdir()
    try:
        # Files are written and fsync'd on writer threads while the next variant renders (fsync
        # waits on the disk, not the CPU); every write has finished before DIR is pointed here.
        with ThreadPoolExecutor(max_workers=WRITER_THREADS, thread_name_prefix="build-write") as writer:
            writes: list[Future[None]] = []

            def write(name: str, data: bytes) -> None:
                writes.append(writer.submit(_write, staged / name, data))

            variants: list[VariantRecord] = []
            rendered: dict[str, RenderedVariant] = {}
            timings = StageTimings()
            for spec in edition.variants:
                result = render_variant(template, edition, spec, settings)
                timings = timings + result.timings
                rendered[spec.segment] = result
                html_bytes, text_bytes = result.html.encode("utf-8"), result.text.encode("utf-8")
                names = {ext: f"{spec.segment}.{ext}" for ext in ("html", "txt", "eml")}
                write(names["html"], html_bytes)
                write(names["txt"], text_bytes)
                record = VariantRecord(
                    segment=spec.segment, subject=spec.subject, preheader=spec.preheader,
                    from_name=settings.from_name, from_email=settings.from_email, reply_to=settings.reply_to,
                    list_id=list_id(settings.from_name, settings.from_email),
                    html_file=names["html"], text_file=names["txt"], eml_file=names["eml"],
                    sha256=_sha(html_bytes), text_sha256=_sha(text_bytes), size=len(html_bytes),
                    articles=((spec.featured.slug,) if spec.featured else ()) + tuple(a.slug for a in spec.articles),
                    send_at=spec.send_at, zone=spec.zone, window=spec.window, locale=" ".join(spec.locales),
                    gates=check_html(result.html),
                )
                write(names["eml"], preview_message(
                    record, html=result.html, text=result.text, public_base_url=settings.public_base_url,
                    message_id=_message_id(edition.id, spec.segment, settings.from_email),
                ))
                variants.append(record)
            record = BuildRecord(
                edition=edition.id, title=edition.title, template=edition.template,
                template_sha256=template_sha256(template.directory), inputs_sha256=inputs.fingerprint,
                inputs=inputs.hashes, variants=tuple(variants),
            )
            write(BUILD_JSON, record.to_json().encode("utf-8"))
            for done in writes:
                done.result()  # raises the first write that failed
        _publish(staged, out)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)  # after the writer threads have stopped
        raise
    return Build(out, staged, record, rendered, timings)


def _same_inputs(out: Path, fingerprint: str) -> Build | None:
    """The build already in DIR when it was made from these inputs and is intact, else None."""
    if not (out / BUILD_JSON).is_file():
        return None
    try:
        build = load_build(out, for_sending=False)
    except GateFailed:
        return None  # damaged: build it again
    return build if build.record.inputs_sha256 == fingerprint else None


def build_from_edition(
    edition: Edition, settings: Settings, out_dir: Path | None = None, *, reuse: bool = False
) -> Build:
    """Render, gate and write every variant of a loaded edition (see the module docstring). With
    reuse, an intact build of the same inputs already in out_dir is returned as it is. Raises
    BuildGateFailed (a GateFailed) after writing everything when any variant fails a gate."""
    _refuse_unsafe_names(edition)
    template = load_template(settings, edition.template)
    out = Path(out_dir) if out_dir else settings.project_dir / "build" / edition.id
    _refuse_foreign_target(out)
    inputs = _inputs(edition, settings, template)
    with _build_lock(out):
        build = _same_inputs(out, inputs.fingerprint) if reuse else None
        if build is None:
            build = _render_into(edition, settings, template, inputs, out)
    if build.failed:
        raise BuildGateFailed(build)
    return build


def build_edition(
    manifest_path: Path, settings: Settings, out_dir: Path | None = None, *,
    segments: KnownSegments | None = None, reuse: bool = False,
) -> Build:
    """Build the edition of a manifest into out_dir (default: <project>/build/<edition id>).
    Raises ManifestError on a bad manifest, InputError on a missing template, and GateFailed
    (after writing everything) when any variant fails a gate."""

    edition = load_manifest(Path(manifest_path), settings, segments)
    return build_from_edition(edition, settings, out_dir, reuse=reuse)


# --- reading -------------------------------------------------------------------------------


def load_build(build_dir: Path, *, for_sending: bool = True) -> Build:
    """The one reader of a build: build.json parsed by BuildRecord, every .html/.txt read and
    re-hashed, all from one resolved directory. Raises GateFailed when build.json or a file is
    missing or not what the record says, and (for sending) when a variant failed its gates."""
    out = Path(build_dir)
    directory = out.resolve()
    path = directory / BUILD_JSON
    try:
        record = BuildRecord.from_json(path.read_text("utf-8"))
    except FileNotFoundError:
        raise GateFailed(f"{out / BUILD_JSON} not found: {out} is not a build", hint=REBUILD_HINT) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise GateFailed(f"{out / BUILD_JSON} is not a valid build record ({exc})", hint=REBUILD_HINT) from None
    rendered: dict[str, RenderedVariant] = {}
    for v in record.variants:
        parts: list[str] = []
        for name, recorded in ((v.html_file, v.sha256), (v.text_file, v.text_sha256)):
            try:
                data = (directory / name).read_bytes()
            except FileNotFoundError:
                raise GateFailed(f"{out / name} is missing from the build", hint=REBUILD_HINT) from None
            if _sha(data) != recorded:
                raise GateFailed(f"{out / name} was changed after the build (sha256 mismatch)", hint=REBUILD_HINT)
            parts.append(data.decode("utf-8"))
        if for_sending and v.gates.failed:
            raise GateFailed(f"{v.segment} failed the quality gates when built: " + "; ".join(v.gates.failed),
                             hint="fix the inputs and rebuild")
        rendered[v.segment] = RenderedVariant(v.segment, parts[0], parts[1])
    return Build(out, directory, record, rendered)
