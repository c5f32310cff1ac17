"""`newsletter demo`: a tour of the tool on the sample project, offline (SQLite, no API key).

A demo is a sequence of small step functions, each adding its results to the report; later areas
add steps (subscribers, send to the outbox, schedule) without changing the earlier ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from newsletter.build import BuildResult, build_edition
from newsletter.config import Settings
from newsletter.errors import InputError

SAMPLE_MANIFEST = Path("issues") / "2026-12.yaml"


@dataclass(frozen=True)
class DemoReport:
    manifest: Path
    build: BuildResult | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


DemoStep = Callable[[Settings, DemoReport], DemoReport]


def step_build(settings: Settings, report: DemoReport) -> DemoReport:
    """Build every variant of the sample edition into <project>/build/<edition id>/."""
    result = build_edition(report.manifest, settings)
    note = f"built {len(result.variants)} variants of {result.edition_id} into {result.out_dir}"
    return replace(report, build=result, notes=report.notes + (note,))


STEPS: tuple[DemoStep, ...] = (step_build,)


def run_demo(settings: Settings, steps: tuple[DemoStep, ...] = STEPS) -> DemoReport:
    manifest = settings.project_dir / SAMPLE_MANIFEST
    if not manifest.is_file():
        raise InputError(
            f"sample manifest {manifest} not found",
            hint="run `newsletter demo` in the project directory (or set NEWSLETTER_PROJECT_DIR)",
        )
    report = DemoReport(manifest=manifest)
    for step in steps:
        report = step(settings, report)
    return report
