"""Every .eml of the sample edition passes ../shared/tools/email-check with 0 FAIL.

The tool installs Chromium and an npm package on first use; that is expected in CI."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.render.build import build_edition

EMAIL_CHECK = Path(__file__).resolve().parents[1].parent / "shared/tools/email-check"

pytestmark = pytest.mark.slow


def run_check(eml: Path, shots: Path) -> tuple[Path, int, str]:
    proc = subprocess.run(
        [sys.executable, str(EMAIL_CHECK), str(eml), "--out", str(shots / eml.stem)],
        capture_output=True, text=True, timeout=600,
    )
    return eml, proc.returncode, proc.stdout + proc.stderr


@pytest.mark.skipif(not EMAIL_CHECK.is_file(), reason=f"email-check not found at {EMAIL_CHECK}")
def test_every_sample_variant_passes_email_check(project: Path, tmp_path: Path) -> None:
    result = build_edition(project / "issues" / "2026-12.yaml", load_settings(project))
    emls = sorted(result.out_dir.glob("*.eml"))
    assert len(emls) == len(result.variants) == 12
    # one run first (installs Chromium / the npm lint on a fresh machine), then the rest in parallel
    outcomes = [run_check(emls[0], tmp_path)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes += list(pool.map(lambda eml: run_check(eml, tmp_path), emls[1:]))
    for eml, code, output in outcomes:
        fails = [line for line in output.splitlines() if line.startswith("FAIL")]
        assert fails == [] and code == 0, f"{eml.name}:\n{output}"
        assert "overflow-375: scrollWidth" in output and " 0 failed" in output


@pytest.mark.skipif(not EMAIL_CHECK.is_file(), reason=f"email-check not found at {EMAIL_CHECK}")
def test_hostile_article_passes_email_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Script and & in the title, an img tag and a 200-character URL in the summary, Welsh and
    emoji text: no script, no relative URL, no overflow at 375 px."""
    from buildproject import make_build_project

    root = make_build_project(tmp_path / "p", monkeypatch)
    result = build_edition(root / "issues" / "edition.yaml", load_settings(root))
    eml, code, output = run_check(result.eml_path("wales"), tmp_path)
    assert code == 0, output
    for check in ("no-script", "absolute-urls", "overflow-375", "text-no-html"):
        assert f"PASS {check}" in output, output
