"""`newsletter serve` as an operator runs it: uvicorn loads the app from its import string (the CLI
never imports newsletter.web), and the access log never shows a token."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from newsletter.delivery import UNSUBSCRIBE, make_token

pytestmark = pytest.mark.slow


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, data: bytes | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_serve_starts_the_app_and_keeps_tokens_out_of_the_access_log(project: Path) -> None:
    port = _port()
    token = make_token(os.environ["NEWSLETTER_SECRET"], 999, UNSUBSCRIBE)
    proc = subprocess.Popen([sys.executable, "-m", "newsletter", "serve", "--port", str(port)], cwd=project,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if _get(f"http://127.0.0.1:{port}/healthz") == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("newsletter serve did not answer")
        assert _get(f"http://127.0.0.1:{port}/u/{token}") == 404  # no member 999
        assert _get(f"http://127.0.0.1:{port}/p/{token}?x=1", data=b"a=b") == 403  # no form token
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    assert "GET /u/… HTTP" in output and "POST /p/…?x=1 HTTP" in output, output
    assert token not in output and token.split(".")[1] not in output


def test_serve_refuses_to_start_without_a_secret(cli, project: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("NEWSLETTER_SECRET")
    result = cli("serve", "--port", str(_port()))
    assert result.exit_code == 2 and "NEWSLETTER_SECRET_FILE" in result.stderr


def test_the_cli_does_not_import_the_web() -> None:
    code = ("import sys, newsletter.cli.app; from newsletter.cli import serve; "
            "assert 'newsletter.web' not in sys.modules, 'cli imported web'")
    subprocess.run([sys.executable, "-c", code], check=True)
