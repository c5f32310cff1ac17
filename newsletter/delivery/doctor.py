"""The deliverability doctor: does the sending domain publish what Gmail and Yahoo require of
bulk senders, for mail sent through SendGrid?

    check_domain(domain, from_email, resolver=DnsResolver(), sendgrid=None) -> list[Finding]

Each finding is PASS, WARN or FAIL, and a WARN or FAIL says which DNS record to add or change:
- from: `from_email` is on the domain (or a subdomain of it), so DMARC can align;
- SPF: one `v=spf1` TXT record at the domain that includes `sendgrid.net`;
- DKIM: `s1._domainkey` and `s2._domainkey` resolve (CNAMEs into sendgrid.net, as SendGrid's
  domain authentication sets them up, or the domain's own DKIM keys);
- DMARC: a `v=DMARC1` TXT record at `_dmarc.<domain>` with a policy (`p=none` only monitors: WARN);
- with an API key, SendGrid's domain authentication for the domain says it is valid.

DNS goes through a Resolver (dnspython's by default); tests give it a fake that answers from zone
files, so nothing in the test run touches real DNS.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

import dns.exception
import dns.resolver

from newsletter.errors import InputError

Status = Literal["PASS", "WARN", "FAIL"]
DKIM_SELECTORS = ("s1", "s2")
SENDGRID_SPF = "include:sendgrid.net"


@dataclass(frozen=True)
class Finding:
    status: Status
    check: str
    detail: str
    fix: str | None = None  # the DNS record to add or change, or what to do

    def as_dict(self) -> dict[str, str | None]:
        return {"status": self.status, "check": self.check, "detail": self.detail, "fix": self.fix}


class LookupFailed(Exception):
    """DNS did not answer (timeout, no name servers): neither "there" nor "not there"."""


class Resolver(Protocol):
    def resolve(self, qname: str, rdtype: str) -> Iterable[object]: ...


class DnsRecords:
    """TXT and CNAME look-ups through a resolver; a name or type that does not exist is empty."""

    def __init__(self, resolver: Resolver | None = None, timeout: float = 5.0) -> None:
        if resolver is None:
            real = dns.resolver.Resolver()
            real.lifetime = timeout
            resolver = real
        self.resolver = resolver

    def _answer(self, name: str, rdtype: str) -> list[object]:
        try:
            return list(self.resolver.resolve(name, rdtype))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.NoResolverConfiguration) as exc:
            raise LookupFailed(f"no answer for {name} {rdtype} ({exc.__class__.__name__})") from None

    def txt(self, name: str) -> list[str]:
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self._answer(name, "TXT")]  # type: ignore[attr-defined]

    def cname(self, name: str) -> str | None:
        answers = self._answer(name, "CNAME")
        return str(answers[0].target).rstrip(".").lower() if answers else None  # type: ignore[attr-defined]


SendGridDomains = Callable[[str], list[dict[str, object]]]


def sendgrid_domains(api_key: str, host: str, timeout: float = 10.0) -> SendGridDomains:
    """SendGrid's authenticated domains for a domain (GET /v3/whitelabel/domains?domain=…)."""

    def fetch(domain: str) -> list[dict[str, object]]:
        url = f"{host.rstrip('/')}/v3/whitelabel/domains?" + urllib.parse.urlencode({"domain": domain})
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (https host from settings)
                data = json.loads(response.read().decode("utf-8"))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise LookupFailed(f"SendGrid's domain authentication could not be read ({exc})") from None
        return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []

    return fetch


def _on_domain(address: str, domain: str) -> bool:
    host = address.rpartition("@")[2].lower()
    return host == domain or host.endswith("." + domain)


def _spf(records: DnsRecords, domain: str) -> Finding:
    spf = [t for t in records.txt(domain) if t.lower().startswith("v=spf1")]
    add = f'{domain}. TXT "v=spf1 {SENDGRID_SPF} ~all"'
    if not spf:
        return Finding("FAIL", "spf", f"{domain} publishes no SPF record", f"add {add}")
    if len(spf) > 1:
        return Finding("FAIL", "spf", f"{domain} publishes {len(spf)} SPF records (receivers treat that as an error)",
                       f"merge them into one: {add}")
    if SENDGRID_SPF not in spf[0].lower().split():
        return Finding("FAIL", "spf", f"SPF does not include SendGrid: {spf[0]}",
                       f"add {SENDGRID_SPF} before the all mechanism of the SPF record")
    return Finding("PASS", "spf", f"SPF includes SendGrid: {spf[0]}")


def _dkim(records: DnsRecords, domain: str, selector: str) -> Finding:
    name = f"{selector}._domainkey.{domain}"
    target = records.cname(name)
    if target and (target == "sendgrid.net" or target.endswith(".sendgrid.net")):
        return Finding("PASS", f"dkim-{selector}", f"{name} → {target}")
    if target:
        return Finding("WARN", f"dkim-{selector}", f"{name} points to {target}, not to SendGrid",
                       "check it is the key SendGrid signs with (Settings → Sender Authentication)")
    if any("p=" in t for t in records.txt(name)):
        return Finding("PASS", f"dkim-{selector}", f"{name} publishes a DKIM key")
    return Finding("FAIL", f"dkim-{selector}", f"{name} does not exist: SendGrid's DKIM signature cannot be checked",
                   f"add {name}. CNAME {selector}.domainkey.u<account>.wl<id>.sendgrid.net. "
                   "(the exact value is on SendGrid's Settings → Sender Authentication page)")


def _dmarc(records: DnsRecords, domain: str) -> Finding:
    name = f"_dmarc.{domain}"
    found = [t for t in records.txt(name) if t.replace(" ", "").lower().startswith("v=dmarc1")]
    add = f'{name}. TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@{domain}"'
    if not found:
        return Finding("FAIL", "dmarc", f"{name} publishes no DMARC record (required of bulk senders)", f"add {add}")
    tags = dict(part.strip().split("=", 1) for part in found[0].split(";") if "=" in part)
    policy = tags.get("p", "").strip().lower()
    if policy in ("quarantine", "reject"):
        return Finding("PASS", "dmarc", f"DMARC policy p={policy}")
    if policy == "none":
        return Finding("WARN", "dmarc", "DMARC policy p=none only monitors: mail that fails is still delivered",
                       f"once the reports show only your own mail passing, change it to {add}")
    return Finding("FAIL", "dmarc", f"DMARC record has no valid policy: {found[0]}", f"change it to {add}")


def _sendgrid(fetch: SendGridDomains, domain: str) -> Finding:
    entries = [d for d in fetch(domain) if str(d.get("domain", "")).lower() == domain]
    if not entries:
        return Finding("WARN", "sendgrid-auth", f"{domain} is not an authenticated domain in SendGrid",
                       "authenticate it under Settings → Sender Authentication, then add the records it lists")
    if any(d.get("valid") is True for d in entries):
        return Finding("PASS", "sendgrid-auth", f"SendGrid's domain authentication for {domain} is valid")
    return Finding("FAIL", "sendgrid-auth", f"SendGrid's domain authentication for {domain} is not valid",
                   "add the records SendGrid lists for it, then press Verify there")


def check_domain(
    domain: str, from_email: str, records: DnsRecords | None = None, sendgrid: SendGridDomains | None = None,
) -> list[Finding]:
    """Every check for `domain`, in order (see the module docstring)."""
    domain = domain.strip().rstrip(".").lower()
    if not domain or "." not in domain or "/" in domain or "@" in domain:
        raise InputError(f"{domain!r} is not a domain name", hint="e.g. --domain example.org")
    records = records or DnsRecords()
    findings = [
        Finding("PASS", "from", f"from_email {from_email} is on {domain}") if _on_domain(from_email, domain)
        else Finding("FAIL", "from", f"from_email {from_email} is not on {domain}, so DMARC cannot align",
                     f"send from an address @{domain} (NEWSLETTER_FROM_EMAIL), or check --domain"),
    ]
    checks: list[tuple[str, Callable[[], Finding]]] = [
        ("spf", lambda: _spf(records, domain)),
        *((f"dkim-{s}", lambda s=s: _dkim(records, domain, s)) for s in DKIM_SELECTORS),
        ("dmarc", lambda: _dmarc(records, domain)),
    ]
    if sendgrid is not None:
        checks.append(("sendgrid-auth", lambda: _sendgrid(sendgrid, domain)))
    for name, check in checks:
        try:
            findings.append(check())
        except LookupFailed as exc:
            findings.append(Finding("FAIL", name, str(exc), "check the network or DNS, then run doctor again"))
    return findings
