"""Contract: every request built for the sample edition is valid for SendGrid's OpenAPI (Prism mock).

Starts ../shared/tools/sendgrid-mock on a free port (Prism is installed with npm on first use) and
stops it after. A request with 1,001 personalizations gets 400, which proves the mock validates.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from delivery_support import seed_members
from python_http_client.exceptions import BadRequestsError
from sendgrid import SendGridAPIClient

from newsletter.config import load_settings
from newsletter.db import Database
from newsletter.delivery.requests import MailBuilder, MessageOptions, RecipientRow, helper_mail
from newsletter.delivery.send import load_variants, send_edition
from newsletter.delivery.transports import MailRequest
from newsletter.delivery.transports.sendgrid import SendGridTransport
from newsletter.render import load_build

MOCK = Path(__file__).resolve().parent.parent.parent / "shared" / "tools" / "sendgrid-mock"
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def sendgrid_url() -> Iterator[str]:
    if not MOCK.exists():
        pytest.skip(f"{MOCK} not found (../shared beside the repository)")
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node and npm are needed to run the Prism SendGrid mock")
    env = {**os.environ, "PORT": str(_free_port())}
    started = subprocess.run([str(MOCK)], env=env, capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        pytest.skip(f"sendgrid-mock did not start: {started.stderr.strip()[-300:]}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(MOCK), "--stop"], env=env, capture_output=True, timeout=60)


@pytest.fixture
def sample_build(project: Path) -> Path:
    from newsletter.render.build import build_edition

    out = project / "build" / "2026-12"
    build_edition(project / "issues" / "2026-12.yaml", load_settings(project), out)
    return out



@pytest.mark.parametrize("sandbox", [False, True])
def test_every_request_for_the_sample_edition_is_accepted(
    sandbox: bool, sendgrid_url: str, sample_build: Path, project: Path, db: Database, db_url: str
) -> None:
    regions = [v.segment for v in load_build(sample_build).variants]
    per_region = {region: 3 for region in regions}
    per_region["wales"] = 1001  # a full 1,000-personalization request plus one more
    seed_members(db, per_region, {"unsubscribed": 2})
    settings = load_settings(project, database_url=db_url, sandbox_mode=sandbox, max_requests_per_second=100.0)
    transport = SendGridTransport("SG.contract-test", sendgrid_url, timeout=60)
    reports = send_edition(db, settings, sample_build, transport=transport)
    assert len(reports) == 12
    for report in reports:
        assert (report.failed, report.uncertain, report.pending) == (0, 0, 0), report.problems
        assert report.accepted == report.audience == per_region[report.segment]


def test_mock_rejects_1001_personalizations(sendgrid_url: str, sample_build: Path, project: Path) -> None:
    edition, variants = load_variants(sample_build)
    options = MessageOptions("https://www.example.org/newsletter", b"k")
    people = [RecipientRow(i, f"m{i}@example.org", f"Member {i}", "Member") for i in range(1001)]
    sg = SendGridAPIClient("SG.contract-test", host=sendgrid_url)
    with pytest.raises(BadRequestsError) as rejected:
        sg.send(helper_mail(variants[0], options, people))
    assert "personalizations" in rejected.value.headers["sl-violations"]
    # the same through our transport: a 400 answer (the sender marks such a batch failed, body kept)
    body = MailBuilder(variants[0], options).body(people[:1000])
    data = json.loads(body)
    data["personalizations"].append(data["personalizations"][0])
    response = SendGridTransport("SG.contract-test", sendgrid_url).send(
        MailRequest(edition, variants[0].segment, 0, json.dumps(data).encode(), 1001))
    assert response.status == 400 and "personalizations" in (response.header("sl-violations") or "")
