"""`newsletter doctor`: SPF, DKIM and DMARC of the sending domain, against fixture zones.

DNS is a fake resolver answering from tests/data/zones/*.zone (parsed by dnspython), so nothing
here touches real DNS; the CLI tests put the same fake in place of dnspython's resolver."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.zone
import pytest

from newsletter.delivery import DnsRecords, check_domain
from newsletter.delivery import doctor as doctor_module

ZONES = Path(__file__).parent / "data" / "zones"


class ZoneResolver:
    """Answers like dnspython's Resolver.resolve, from zone files; NXDOMAIN outside them."""

    def __init__(self, *names: str) -> None:
        self.zones = [dns.zone.from_text((ZONES / f"{n}.zone").read_text(), relativize=False) for n in names]
        self.asked: list[tuple[str, str]] = []

    def resolve(self, qname: str, rdtype: str) -> Iterable[object]:
        self.asked.append((qname, rdtype))
        name = dns.name.from_text(qname)
        for zone in self.zones:
            if name.is_subdomain(zone.origin):
                node = zone.get_node(name)
                if node is None:
                    raise dns.resolver.NXDOMAIN
                rdataset = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype))
                if rdataset is None:
                    raise dns.resolver.NoAnswer
                return list(rdataset)
        raise dns.resolver.NXDOMAIN


class DeadResolver:
    def resolve(self, qname: str, rdtype: str) -> Iterable[object]:
        raise dns.exception.Timeout


def statuses(findings: list) -> dict[str, str]:  # type: ignore[type-arg]
    return {f.check: f.status for f in findings}


def test_a_domain_with_every_record_passes() -> None:
    resolver = ZoneResolver("good.example")
    findings = check_domain("good.example", "digest@good.example", DnsRecords(resolver))
    assert statuses(findings) == {"from": "PASS", "spf": "PASS", "dkim-s1": "PASS", "dkim-s2": "PASS", "dmarc": "PASS"}
    assert ("_dmarc.good.example", "TXT") in resolver.asked and ("s2._domainkey.good.example", "CNAME") in resolver.asked


def test_missing_dkim_and_monitoring_dmarc_fail_and_warn_with_the_records_to_add() -> None:
    findings = check_domain("weak.example", "digest@weak.example", DnsRecords(ZoneResolver("weak.example")))
    by = {f.check: f for f in findings}
    assert statuses(findings) == {"from": "PASS", "spf": "PASS", "dkim-s1": "FAIL", "dkim-s2": "FAIL", "dmarc": "WARN"}
    assert "s1._domainkey.weak.example. CNAME s1.domainkey." in (by["dkim-s1"].fix or "")
    assert "p=none" in by["dmarc"].detail and '_dmarc.weak.example. TXT "v=DMARC1; p=quarantine' in (by["dmarc"].fix or "")


def test_no_records_at_all_and_a_from_address_elsewhere() -> None:
    findings = check_domain("nothing.example", "news@other.example", DnsRecords(ZoneResolver("good.example")))
    by = {f.check: f for f in findings}
    assert set(statuses(findings).values()) == {"FAIL"}
    assert by["spf"].fix == 'add nothing.example. TXT "v=spf1 include:sendgrid.net ~all"'
    assert "not on nothing.example" in by["from"].detail


def test_dns_that_does_not_answer_is_a_failure_that_says_so() -> None:
    findings = check_domain("good.example", "digest@good.example", DnsRecords(DeadResolver()))
    assert statuses(findings)["spf"] == "FAIL" and "no answer" in findings[1].detail


def test_sendgrid_domain_authentication_is_reported() -> None:
    records = DnsRecords(ZoneResolver("good.example"))
    valid = check_domain("good.example", "a@good.example", records, lambda d: [{"domain": d, "valid": True}])
    invalid = check_domain("good.example", "a@good.example", records, lambda d: [{"domain": d, "valid": False}])
    absent = check_domain("good.example", "a@good.example", records, lambda d: [])
    assert [statuses(f)["sendgrid-auth"] for f in (valid, invalid, absent)] == ["PASS", "FAIL", "WARN"]


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    resolver = ZoneResolver("good.example", "weak.example")
    monkeypatch.setattr(doctor_module.dns.resolver, "Resolver", lambda *a, **k: resolver)


def test_doctor_command_all_pass_exit_0(project: Path, cli, fake_dns, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NEWSLETTER_FROM_EMAIL", "digest@good.example")
    result = cli("doctor")  # the domain of from_email
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line[:4] in ("PASS", "WARN", "FAIL")]
    assert len(lines) == 5 and all(line.startswith("PASS") for line in lines)


def test_doctor_command_weak_domain_exit_1(project: Path, cli, fake_dns, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NEWSLETTER_FROM_EMAIL", "digest@weak.example")
    result = cli("doctor", "--domain", "weak.example", "--json")
    assert result.exit_code == 1
    findings = json.loads(result.stdout)
    assert [(f["check"], f["status"]) for f in findings if f["status"] != "PASS"] == [
        ("dkim-s1", "FAIL"), ("dkim-s2", "FAIL"), ("dmarc", "WARN")]
    assert "2 check(s) failed for weak.example" in result.stderr


def test_doctor_refuses_a_bad_domain(project: Path, cli, fake_dns) -> None:  # type: ignore[no-untyped-def]
    result = cli("doctor", "--domain", "not a domain/")
    assert result.exit_code == 2 and "is not a domain name" in result.stderr
