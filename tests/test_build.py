"""newsletter build: files, build.json, determinism, gates, load_build, fingerprint, CLI, demo."""

from __future__ import annotations

import email
import json
import shutil
from email import policy
from pathlib import Path

import pytest
from buildproject import make_build_project

from newsletter.config import load_settings
from newsletter.errors import GateFailed, InputError
from newsletter.render.build import (
    BuildGateFailed,
    build_edition,
    inputs_fingerprint,
    load_build,
)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_build_project(tmp_path / "p", monkeypatch)


MANIFEST = Path("issues/edition.yaml")


def test_build_writes_every_output(root: Path) -> None:
    result = build_edition(root / MANIFEST, load_settings(root))
    out = root / "build" / "2026-99"
    assert result.out_dir == out and [v.segment for v in result.variants] == ["scotland", "wales", "members"]
    data = json.loads((out / "build.json").read_text("utf-8"))
    assert data["edition"] == "2026-99" and data["template"] == "digest"
    assert len(data["template_sha256"]) == 64 and len(data["inputs_sha256"]) == 64
    scotland = data["variants"]["scotland"]
    assert scotland["html"] == "scotland.html" and scotland["eml"] == "scotland.eml"
    assert scotland["articles"] == ["lead-well", "scottish-cloud", "gdpr-steps", "hostile"]
    assert scotland["send_at"] == "2026-12-03T07:30:00+00:00" and scotland["zone"] == "Europe/London"
    assert scotland["gates"] == {"failed": [], "warnings": []}
    html = (out / "scotland.html").read_bytes()
    assert scotland["size"] == len(html) <= 90_000
    assert scotland["from_email"] == "digest@example.org" and scotland["reply_to"] == "comms@example.org"
    assert scotland["list_id"] == '"LPS IT Society Digest" <digest.example.org>'
    # build.json is the record's own serialisation, and reads back to the same record
    record = load_build(out).record
    assert record.to_json() == (out / "build.json").read_text("utf-8") == result.record.to_json()


def test_eml_is_a_preview_for_a_sample_member(root: Path) -> None:
    build_edition(root / MANIFEST, load_settings(root))
    raw = (root / "build" / "2026-99" / "wales.eml").read_bytes()
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["From"] == "LPS IT Society Digest <digest@example.org>"
    assert msg["To"] == "Alex Example <alex@example.org>"
    assert msg["Subject"] == "Test digest" and msg["Message-ID"] == "<2026-99.wales@example.org>"
    assert msg["Date"] == "Thu, 03 Dec 2026 08:00:00 +0000"
    assert msg["List-Unsubscribe"] == ("<https://www.example.org/newsletter/u/sample-token>, "
                                       "<mailto:comms@example.org?subject=unsubscribe>")
    assert msg["List-Id"] == '"LPS IT Society Digest" <digest.example.org>'
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "Hello Alex," in text and "https://www.example.org/newsletter/u/sample-token" in text
    assert 'href="https://www.example.org/newsletter/p/sample-token"' in html
    assert "-first_name-" not in html + text


def test_two_builds_are_byte_identical(root: Path) -> None:
    settings = load_settings(root)
    build_edition(root / MANIFEST, settings, out_dir=root / "a")
    build_edition(root / MANIFEST, settings, out_dir=root / "b")
    names = sorted(p.name for p in (root / "a").iterdir())
    assert (root / "a").is_symlink() and (root / "a").resolve().name.startswith(".a.build-")
    assert len(names) == 10
    for name in names:
        assert (root / "a" / name).read_bytes() == (root / "b" / name).read_bytes(), name


def test_template_is_chosen_by_the_manifest(root: Path) -> None:
    shutil.copytree(root / "templates" / "digest", root / "templates" / "plain")
    entry = root / "templates" / "plain" / "email.mjml.j2"
    entry.write_text(entry.read_text("utf-8").replace('ui.label(_("Featured"), theme)', 'ui.label("OUR PICK", theme)'), "utf-8")
    manifest = root / MANIFEST
    manifest.write_text(manifest.read_text("utf-8").replace("template: digest", "template: plain"))
    result = build_edition(manifest, load_settings(root))
    assert result.template == "plain" and "OUR PICK" in result.html("scotland")


def test_missing_template_is_input_error_naming_the_path(root: Path, cli) -> None:  # type: ignore[no-untyped-def]
    shutil.rmtree(root / "templates" / "digest")
    with pytest.raises(InputError, match=r"templates/digest/email\.mjml\.j2"):
        build_edition(root / MANIFEST, load_settings(root))
    result = cli("build", str(MANIFEST))
    assert result.exit_code == 2
    assert "templates/digest/email.mjml.j2" in result.stderr.replace("\n", "")


def test_gate_failure_writes_everything_then_fails(root: Path, cli) -> None:  # type: ignore[no-untyped-def]
    macros = root / "templates" / "digest" / "_macros.mjml.j2"
    # plant a relative link in every article card
    macros.write_text(macros.read_text("utf-8").replace('<a href="{{ article.url }}" style="color:{{ theme.link }}',
                                                        '<a href="/read/{{ article.slug }}" style="color:{{ theme.link }}'))
    with pytest.raises(BuildGateFailed) as info:
        build_edition(root / MANIFEST, load_settings(root))
    assert info.value.result.failed == ["scotland", "wales", "members"]
    out = root / "build" / "2026-99"
    assert (out / "build.json").is_file() and (out / "members.eml").is_file()
    failed = json.loads((out / "build.json").read_text())["variants"]["wales"]["gates"]["failed"]
    assert any("'/read/gdpr-steps'" in item for item in failed)
    with pytest.raises(GateFailed, match="failed the quality gates"):
        load_build(out)  # a failed build cannot be loaded for sending
    result = cli("build", str(MANIFEST))
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "3 variant(s) failed the quality gates" in result.stderr


def test_load_build_rehashes_files(root: Path) -> None:
    result = build_edition(root / MANIFEST, load_settings(root))
    info = load_build(result.out_dir)
    assert info.edition_id == "2026-99" and info.inputs_sha256 == result.inputs_sha256
    assert info.record == result.record and info.html("wales") == result.html("wales")
    assert info.variant("wales").send_at is not None
    (result.out_dir / "wales.txt").write_text("changed", "utf-8")
    with pytest.raises(GateFailed, match=r"wales\.txt was changed"):
        load_build(result.out_dir)
    (result.out_dir / "wales.txt").unlink()
    with pytest.raises(GateFailed, match="missing"):
        load_build(result.out_dir)
    with pytest.raises(GateFailed, match="not a build"):
        load_build(root / "issues")


def test_inputs_fingerprint_tracks_what_changes_the_output(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(root)
    first = inputs_fingerprint(root / MANIFEST, settings)
    assert first == inputs_fingerprint(root / MANIFEST, settings)
    assert first == build_edition(root / MANIFEST, settings).inputs_sha256
    article = root / "issues" / "articles" / "gdpr-steps.md"
    article.write_text(article.read_text("utf-8").replace("work outwards", "work out"), "utf-8")
    second = inputs_fingerprint(root / MANIFEST, settings)
    assert second != first
    (root / "templates" / "digest" / "template.yaml").write_text("theme: {}\n", "utf-8")
    third = inputs_fingerprint(root / MANIFEST, settings)
    assert third != second
    monkeypatch.setenv("NEWSLETTER_POSTAL_ADDRESS", "2 Other Street")
    assert inputs_fingerprint(root / MANIFEST, load_settings(root)) != third


def test_build_command_prints_a_table(root: Path, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("build", str(MANIFEST), "--out", "out")
    assert result.exit_code == 0, result.stderr
    for word in ("scotland", "wales", "members", "PASS", "KB", "scotland.html"):
        assert word in result.stdout
    assert (root / "out" / "build.json").is_file()


def test_a_rebuild_replaces_the_build_whole(root: Path) -> None:
    """The build is written beside DIR and swapped in by one rename: a reader holding the old
    build keeps reading it whole; the old files are never rewritten in place."""
    settings = load_settings(root)
    out = root / "build" / "2026-99"
    first = build_edition(root / MANIFEST, settings)
    old_dir = out.resolve()
    old_html = (old_dir / "wales.html").read_bytes()
    manifest = root / MANIFEST
    manifest.write_text(manifest.read_text("utf-8").replace("Test digest", "Changed digest"), "utf-8")
    second = build_edition(manifest, settings)
    assert out.resolve() != old_dir and second.inputs_sha256 != first.inputs_sha256
    assert (old_dir / "wales.html").read_bytes() == old_html  # the previous build is left as it was
    assert load_build(out).variant("wales").subject == "Changed digest"
    third = build_edition(manifest, settings)  # the one before the previous one is cleaned up
    assert not old_dir.exists() and out.resolve() == third.directory
    leftovers = sorted(p.name for p in out.parent.iterdir())
    assert leftovers == sorted([".2026-99.lock", second.directory.name, third.directory.name, "2026-99"])


def test_reuse_returns_the_build_of_the_same_inputs(root: Path) -> None:
    settings = load_settings(root)
    first = build_edition(root / MANIFEST, settings)
    again = build_edition(root / MANIFEST, settings, reuse=True)
    assert again.directory == first.directory  # nothing rebuilt
    (first.directory / "wales.html").write_text("edited", "utf-8")  # a damaged build is not reused
    repaired = build_edition(root / MANIFEST, settings, reuse=True)
    assert repaired.directory != first.directory and load_build(repaired.out_dir).record == first.record


def test_out_dir_that_is_not_a_build_is_refused(root: Path, cli) -> None:  # type: ignore[no-untyped-def]
    precious = root / "notes"
    precious.mkdir()
    (precious / "todo.txt").write_text("keep me", "utf-8")
    result = cli("build", str(MANIFEST), "--out", "notes")
    assert result.exit_code == 2 and "is not a build" in result.stderr
    assert (precious / "todo.txt").read_text("utf-8") == "keep me"


def test_a_build_from_before_linking_is_replaced(root: Path) -> None:
    out = root / "build" / "2026-99"
    out.mkdir(parents=True)
    (out / "build.json").write_text("{}", "utf-8")
    (out / "wales.html").write_text("old", "utf-8")
    build_edition(root / MANIFEST, load_settings(root))
    assert out.is_symlink() and load_build(out).edition_id == "2026-99"
