"""OutboxTransport: writes each request as JSON to `<outbox>/<edition>/<segment>/<seq>.json`.

The default when no SendGrid API key is set: nothing leaves the machine; every file is exactly the
body SendGrid would get. Writes are atomic (temporary file + rename), so a crash never leaves half a
file, and a resumed send overwrites a batch file with the same content. A write that fails (missing
or read-only directory, full disk) raises ConnectionFailed: nothing was delivered, so the batch is
retried and, after max_retries, failed and resumed by the next send; never "uncertain".
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from newsletter.delivery.transports.base import ConnectionFailed, MailRequest, TransportResponse
from newsletter.errors import InputError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(part: str) -> str:
    cleaned = _UNSAFE.sub("_", part).strip(".") or "_"
    return cleaned[:100]


class OutboxTransport:
    name = "outbox"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path_for(self, request: MailRequest) -> Path:
        return (
            self.directory / _safe(request.edition) / _safe(request.segment)
            / f"{request.batch_seq:06d}.json"
        )

    def check_writable(self) -> None:
        """Create the outbox directory and write (then remove) a probe file; InputError if not possible."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.directory, prefix=".probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise InputError(
                f"outbox directory {self.directory} cannot be created or written: {exc.strerror or exc}",
                hint="pass --outbox DIR (or set NEWSLETTER_OUTBOX_DIR) to a writable directory",
            ) from None

    def send(self, request: MailRequest) -> TransportResponse:
        target = self.path_for(request)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
        except OSError as exc:
            raise ConnectionFailed(f"outbox: cannot write {target}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(request.body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise ConnectionFailed(f"outbox: cannot write {target}: {exc}") from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return TransportResponse(202, {"X-Message-Id": f"outbox:{target.name}"})
