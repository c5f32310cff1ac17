"""A small project for build tests: the repo's pyproject and templates, plus tests/data/build/issues
(4 articles, one hostile; a 3-segment manifest)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "build"


def make_build_project(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(REPO / "templates", root / "templates")
    shutil.copytree(DATA / "issues", root / "issues")
    monkeypatch.chdir(root)
    monkeypatch.setenv("NEWSLETTER_PROJECT_DIR", str(root))
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", f"sqlite:///{root / 'newsletter.db'}")
    return root
