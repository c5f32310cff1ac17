"""The exception tree. Every error a user can cause or meet is a NewsletterError.

    NewsletterError                 exit 1  (anything the tool itself could not do)
    ├── InputError                  exit 2  (bad input: fix the named file / row / option)
    │   ├── ManifestError                   (issue manifest problems, with file:line:col)
    │   ├── ArticleError                    (article front matter / feed problems)
    │   ├── ImportFileError                 (subscriber file cannot be read at all)
    │   ├── SegmentError                    (segments.yaml problems)
    │   ├── ScheduleError                   (bad, past, or non-existent local times)
    │   └── NotFound                        (an edition, subscriber, run or job that does not exist)
    ├── GateFailed                  exit 1  (a built email failed a quality gate)
    ├── DatabaseError               exit 1  (database unreachable, or newer than this code)
    ├── DeliveryError               exit 1
    │   ├── InProgressElsewhere     exit 3  (another process still holds batches of the send)
    │   ├── TransportAuthError              (401/403 from the provider: stop at once)
    │   └── TransportError                  (a request could not be completed)
    └── ConfigError                 exit 2  (a missing or invalid setting)

The CLI prints `error: <message>` (plus the hint, if any) and exits with `exit_code`.
"""

from __future__ import annotations

from dataclasses import dataclass


class NewsletterError(Exception):
    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    @property
    def explained(self) -> str:
        """The message with its hint in brackets, for a page or a stored note (the CLI prints the
        hint on a line of its own)."""
        return self.message + (f" ({self.hint})" if self.hint else "")


class InputError(NewsletterError):
    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One problem found in an input file, reported as `file:line:col: message (hint)`."""

    file: str
    line: int
    col: int
    message: str
    hint: str | None = None
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class ProblemsError(InputError):
    """Several problems found at once in one or more input files."""

    def __init__(self, problems: list[Problem], message: str | None = None) -> None:
        self.problems = list(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        summary = message or f"{len(errors)} problem(s) found"
        super().__init__(summary + "\n" + "\n".join(str(p) for p in self.problems))


class ManifestError(ProblemsError):
    pass


class DigestError(ProblemsError):
    """A digest definition (issues/digests/<name>.yaml) with problems."""


class ArticleError(InputError):
    pass


class ImportFileError(InputError):
    pass


class SegmentError(ProblemsError):
    pass


class ScheduleError(InputError):
    pass


class NotFound(InputError):
    pass


class ConfigError(NewsletterError):
    exit_code = 2


class GateFailed(NewsletterError):
    pass


class DatabaseError(NewsletterError):
    pass


class DeliveryError(NewsletterError):
    pass


class TransportError(DeliveryError):
    pass


class InProgressElsewhere(DeliveryError):
    """Another process (a second `send`, a daemon) still holds batches of these runs."""

    exit_code = 3


class TransportAuthError(TransportError):
    pass
