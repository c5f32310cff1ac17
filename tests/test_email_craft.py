"""What email specialists check in every variant of the sample edition: Outlook's ghost tables and
line heights, the heading outline, the hero's alt, dark-mode hierarchy, the preheader filler, and a
text part that stays within 78 columns once SendGrid has filled in a long name and address; and the
Welsh and bilingual variants."""

from __future__ import annotations

import re
from pathlib import Path

import lxml.html
import pytest
from buildproject import make_build_project

from newsletter.config import load_settings
from newsletter.delivery import UNSUBSCRIBE, make_token
from newsletter.render import Build, build_edition, substitute, substitution_values

LONG_NAME = "Maximiliana-Wilhelmina Featherstonehaugh"  # 40 characters
LONG_EMAIL = "maximiliana.featherstonehaugh-ashburnham@northlanarkshire.gov.uk"  # 64 characters
GHOST_DIVIDER = re.compile(r'<!--\[if mso \| IE\]><table [^>]*width="(\d+)px" style="border-top:')
URL_LINE = re.compile(r"^<?https?://\S+>?$")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Build:
    root = Path(__file__).resolve().parent.parent
    project = tmp_path_factory.mktemp("craft")
    for name in ("pyproject.toml",):
        (project / name).write_bytes((root / name).read_bytes())
    import shutil

    for folder in ("issues", "templates", "subscribers"):
        shutil.copytree(root / folder, project / folder)
    return build_edition(project / "issues" / "2026-12.yaml", load_settings(project))


def headings(html: str) -> list[int]:
    return [int(el.tag[1]) for el in lxml.html.document_fromstring(html).iter("h1", "h2", "h3", "h4", "h5", "h6")]


def test_heading_levels_never_skip(sample: Build) -> None:
    for v in sample.variants:
        levels = headings(sample.html(v.segment))
        assert levels[0] == 1, v.segment
        for before, after in zip(levels, levels[1:], strict=False):
            assert after <= before + 1, (v.segment, levels)
        assert levels.count(2) >= 2  # the section labels are headings, not styled divs


def test_every_divider_ghost_table_is_552_px(sample: Build) -> None:
    for v in sample.variants:
        widths = GHOST_DIVIDER.findall(sample.html(v.segment))
        assert len(widths) >= 2 and set(widths) == {"552"}, (v.segment, widths)


def test_outlook_line_heights_and_hidden_text(sample: Build) -> None:
    for v in sample.variants:
        html = sample.html(v.segment)
        styles = re.findall(r'style="([^"]*)"', html)
        unitless = [s for s in styles if re.search(r"line-height:\s*(?!0\s*(;|$))\d+(\.\d+)?\s*(;|$)", s)]
        assert unitless == [], (v.segment, unitless[:2])
        for style in styles:  # a pixel line height is exact in Word's engine too
            if re.search(r"line-height:\s*\d+px", style) and "font-size:1px" not in style:
                assert "mso-line-height-rule:exactly" in style.replace(" ", ""), (v.segment, style)
        hidden = re.findall(r'<span class="nl-sr" style="([^"]*)"', html)
        assert hidden and all("mso-hide:all" in s.replace(" ", "") for s in hidden)


def test_hero_alt_says_where_the_link_goes(sample: Build) -> None:
    doc = lxml.html.document_fromstring(sample.html("london"))
    hero = next(img for img in doc.iter("img") if img.getparent().tag == "a")
    title = doc.xpath("//h3[@class='nl-title']/a")[0].text_content()
    assert hero.get("alt") == title and hero.getparent().get("href") == doc.xpath("//h3/a/@href")[0]


def test_dark_mode_keeps_the_hierarchy(sample: Build) -> None:
    html = sample.html("london")
    dark = html[html.index("prefers-color-scheme: dark"):]
    dark = dark[: dark.index("</style>")]

    def colour(selector: str) -> str:
        match = re.search(re.escape(selector) + r"[^{]*\{[^}]*?(?:color|border-top-color):\s*(#[0-9a-f]{6})", dark)
        assert match, selector
        return match.group(1)

    body, meta, label = colour(".nl-text div"), colour(".nl-text .nl-meta"), colour(".nl-text .nl-label")
    title, link, rule = colour(".nl-text .nl-heading"), colour(".nl-text a {"), colour(".nl-rule p")
    assert len({body, meta, label, title, link}) == 5 and rule not in {"#d9e2ec"}


def test_preheader_has_filler_so_the_preview_stops(sample: Build) -> None:
    doc = lxml.html.document_fromstring(sample.html("london"))
    preview = doc.xpath("//body/div[contains(@style,'display:none')]")[0].text_content()
    assert preview.startswith("The data bill, a GDPR roadmap") and preview.count("\u034f") >= 50


def test_text_part_fits_78_columns_after_substitution(sample: Build) -> None:
    token = make_token("a-secret-of-the-usual-length-" + "x" * 20, 2_000_000_000, UNSUBSCRIBE)
    values = substitution_values(first_name=LONG_NAME, email=LONG_EMAIL,
                                 unsubscribe_url=f"https://www.example.org/newsletter/u/{token}",
                                 preferences_url=f"https://www.example.org/newsletter/p/{token}")
    assert len(LONG_NAME) == 40 and len(LONG_EMAIL) == 64
    for v in sample.variants:
        text = substitute(sample.text(v.segment), values)
        assert LONG_NAME in text and LONG_EMAIL in text
        for line in text.splitlines():
            assert len(line) <= 78 or URL_LINE.match(line), (v.segment, line)
        lines = text.splitlines()
        for key in ("Unsubscribe", "Manage your preferences"):  # a link's text right before its URL
            at = next(i for i, line in enumerate(lines) if line.endswith(key))
            assert lines[at + 1].startswith("<https://www.example.org/newsletter/"), (v.segment, lines[at:at + 2])
        for article in v.articles:  # each article's URL once (at "Continue reading"), not twice
            url = f"https://www.example.org/blog/{article}"
            assert text.count(f"<{url}>") == 1, (v.segment, article)


def test_every_variant_is_at_most_60_kb(sample: Build) -> None:
    assert max(v.size for v in sample.variants) <= 60_000


def test_the_wales_variant_is_bilingual_welsh_first(sample: Build) -> None:
    html = sample.html("wales")
    doc = lxml.html.document_fromstring(html)
    assert doc.get("lang") == "cy"
    welsh = " ".join(el.text_content() for el in doc.xpath("//*[@lang='cy']"))
    english = " ".join(el.text_content() for el in doc.xpath("//*[@lang='en-GB']"))
    for words in ("Dan sylw", "Yn y rhifyn hwn", "Newyddion Cymru", "Parhau i ddarllen", "Dad-danysgrifio",
                  "Rheoli eich dewisiadau", "wedi tanysgrifio i gylchlythyr"):
        assert words in welsh, words
    for words in ("Featured", "In this issue", "News from Wales", "Unsubscribe", "is subscribed to the"):
        assert words in english, words
    assert "Tachwedd\u00a02026" in html  # dates in Welsh, by Babel (a no-break space keeps them whole)
    # the articles are in English, and say so inside the Welsh document
    titles = doc.xpath("//h3[@class='nl-title']")
    assert titles and all(t.xpath("ancestor-or-self::*[@lang][1]/@lang") == ["en-GB"] for t in titles)
    assert sample.variant("wales").locale == "cy en-GB"
    assert "Helo / Hello -first_name-," in sample.text("wales")


def test_a_welsh_only_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_build_project(tmp_path / "p", monkeypatch)
    manifest = root / "issues" / "edition.yaml"
    manifest.write_text(manifest.read_text("utf-8").replace("  wales: {}", "  wales:\n    locale: cy"), "utf-8")
    build = build_edition(manifest, load_settings(root))
    doc = lxml.html.document_fromstring(build.html("wales"))
    assert doc.get("lang") == "cy" and build.variant("wales").locale == "cy"
    footer = doc.xpath("//td[contains(@class,'nl-footer')]")[-1].text_content()
    assert "Dad-danysgrifio" in footer and "Unsubscribe" not in footer and "Rydych chi'n cael" in footer
    assert "Helo -first_name-," in build.text("wales") and "Gweld yn eich porwr" in build.text("wales")
    assert lxml.html.document_fromstring(build.html("scotland")).get("lang") == "en-GB"
