"""The digest template's message catalogues: every fixed string the template uses is in
messages.pot and translated (not fuzzy) in the Welsh catalogue; manifests choose the language."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.pofile import read_po

from newsletter.config import load_settings
from newsletter.content import check_manifest
from newsletter.regions import REGIONS

TEMPLATE = Path(__file__).resolve().parent.parent / "templates" / "digest"
CALLS = re.compile(r"""(?:\b_\(|\bt\(code,\s*|\bN_\()"((?:[^"\\]|\\.)*)\"""")


def used_msgids() -> set[str]:
    found = set()
    for path in TEMPLATE.glob("*.j2"):
        found.update(m for m in CALLS.findall(path.read_text("utf-8")) if m != "…")  # "…": in a comment
    return found | {r.name for r in REGIONS}  # region names arrive as N_(variant.region_name)


def test_every_message_the_template_uses_is_listed_and_translated() -> None:
    used = used_msgids() - {""}
    pot = {m.id for m in read_po((TEMPLATE / "messages.pot").open("rb")) if m.id}
    welsh = read_po((TEMPLATE / "locale" / "cy" / "LC_MESSAGES" / "messages.po").open("rb"), locale="cy")
    assert used <= pot, sorted(used - pot)
    for msgid in pot:
        message = welsh.get(msgid)
        assert message is not None and message.string and not message.fuzzy, msgid
        placeholders = set(re.findall(r"%\((\w+)\)s", msgid))
        assert set(re.findall(r"%\((\w+)\)s", message.string)) == placeholders, msgid


def test_manifest_locale_and_bilingual_are_checked(project: Path) -> None:
    manifest = project / "issues" / "2026-12.yaml"
    text = manifest.read_text("utf-8")
    manifest.write_text(text.replace("    bilingual: [cy, en-GB]", "    bilingual: [cy]\n    locale: cy")
                        .replace("  london:\n", "  london:\n    locale: Welsh please\n"), "utf-8")
    problems = [p for p in check_manifest(manifest, load_settings(project)) if p.severity == "error"]
    messages = [p.message for p in problems]
    assert "give either locale or bilingual, not both" in messages
    assert "unknown locale 'Welsh please'" in messages
    assert all(p.line for p in problems)
