"""Is a scheduled send still exactly what was approved? A send is *at risk* when something its
frozen build was made from has changed since (an article edited, the manifest, the template) or
the frozen build itself is damaged: at its time the daemon would refuse it as stale and send
nothing. The daemon re-checks every waiting send 24 h and 1 h before its time, and `schedule list`
on every listing; both name the file(s) that changed and say what to run.

The names come from the per-input hashes in the build record (newsletter.render.build_inputs),
so the message can say `issues/articles/x.md changed` rather than "something changed".
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from newsletter.config import Settings
from newsletter.errors import NewsletterError, ProblemsError
from newsletter.models import TimeSource
from newsletter.render import Build, Inputs, build_inputs, changed_inputs, load_build

# When the daemon re-checks a waiting send, before its time.
CHECKPOINTS = (timedelta(hours=24), timedelta(hours=1))


@dataclass(frozen=True)
class Risk:
    """Why a waiting send would not go out as approved, and what to run about it."""

    reason: str  # "issues/articles/x.md changed"
    changes: tuple[str, ...]  # each changed input, or the problem
    fix: str

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "changes": list(self.changes), "fix": self.fix}


def shown_path(path: Path, settings: Settings) -> str:
    """A project file as people name it: relative to the project folder when inside it."""
    try:
        return path.resolve().relative_to(settings.project_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


def reschedule_command(settings: Settings, manifest_path: Path, segment: str, time_source: str,
                       local_time: datetime | None) -> str:
    """The command that approves the current text again for one segment, keeping a time that
    was chosen on the command line; with no `local_time` (its time has passed), asking for one."""
    words = ["newsletter", "schedule", shown_path(manifest_path, settings), "--segment", segment]
    if local_time is None:
        return shlex.join(words) + " --at TIME"
    if time_source != TimeSource.MANIFEST:
        words += ["--at", f"{local_time:%Y-%m-%d %H:%M}"]
    return shlex.join(words)


class RiskChecker:
    """Checks sends against their inputs, reading each manifest's inputs and each frozen build
    once (an edition's segments share both)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._inputs: dict[Path, Inputs | str] = {}
        self._builds: dict[Path, Build | str] = {}

    def _current(self, manifest_path: Path) -> Inputs | str:
        if manifest_path not in self._inputs:
            try:
                self._inputs[manifest_path] = build_inputs(manifest_path, self.settings)
            except ProblemsError as exc:
                first = exc.problems[0] if exc.problems else None
                self._inputs[manifest_path] = str(first) if first else exc.message
            except NewsletterError as exc:
                self._inputs[manifest_path] = exc.message
            except OSError as exc:
                self._inputs[manifest_path] = f"cannot read the edition's inputs: {exc}"
        return self._inputs[manifest_path]

    def _frozen(self, build_dir: Path) -> Build | str:
        if build_dir not in self._builds:
            try:
                self._builds[build_dir] = load_build(build_dir)
            except NewsletterError as exc:
                self._builds[build_dir] = exc.message
        return self._builds[build_dir]

    def check(self, *, manifest_path: Path, build_dir: Path, segment: str, fingerprint: str,
              variant_sha256: str, time_source: str, local_time: datetime | None) -> Risk | None:
        """None when the frozen build is intact and its inputs unchanged; else the Risk."""
        fix = reschedule_command(self.settings, manifest_path, segment, time_source, local_time)
        shown = shown_path(manifest_path, self.settings)
        frozen = self._frozen(build_dir)
        if isinstance(frozen, str):
            return Risk(f"the frozen build is damaged: {frozen}", (frozen,), f"run `{fix}` to build and approve it again")
        if {v.segment: v.sha256 for v in frozen.variants}.get(segment) != variant_sha256:
            problem = f"the frozen {segment} variant in {build_dir} is not the approved one"
            return Risk(problem, (problem,), f"run `{fix}` to build and approve it again")
        current = self._current(manifest_path)
        if isinstance(current, str):
            return Risk(f"{shown} cannot be read now: {current}", (current,),
                        f"fix {shown} (see `newsletter check {shown}`), then run `{fix}`")
        if current.fingerprint == fingerprint:
            return None
        changes = tuple(changed_inputs(frozen.record.inputs, current.hashes)) if frozen.record.inputs else ()
        if not changes:  # a build from before per-input hashes were recorded
            changes = (f"{shown}, its articles or the template changed",)
        return Risk("; ".join(changes), changes,
                    f"check the change, then run `{fix}` to approve the new text (or undo the change)")


def check_due(send_at: datetime, checked_at: datetime | None, now: datetime) -> datetime | None:
    """The latest checkpoint (24 h, 1 h before the send) that has come and was not checked
    since, or None."""
    passed = [send_at - before for before in CHECKPOINTS if send_at - before <= now]
    if not passed:
        return None
    latest = max(passed)
    return latest if checked_at is None or checked_at < latest else None
