"""CLI command `doctor`: the sending domain's SPF, DKIM and DMARC (and SendGrid's domain
authentication, with an API key), one PASS/WARN/FAIL line each with the record to add.

Thin: parse options, call newsletter.delivery.check_domain, print.
"""

from __future__ import annotations

from typing import Annotated

import typer

from newsletter.cli.common import print_json, settings
from newsletter.errors import NewsletterError


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("doctor")(doctor_command)


def doctor_command(
    domain: Annotated[str | None, typer.Option(
        "--domain", help="The sending domain (default: the domain of from_email).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Check the sending domain's DNS for bulk mail through SendGrid: SPF, DKIM, DMARC.

    Exit 0 when nothing FAILs (WARNs are advice), 1 when something does."""
    from newsletter.delivery import check_domain, sendgrid_domains

    cfg = settings()
    name = domain or cfg.from_email.rpartition("@")[2]
    fetch = (sendgrid_domains(cfg.sendgrid_api_key.get_secret_value(), cfg.sendgrid_host)
             if cfg.sendgrid_api_key is not None else None)
    findings = check_domain(name, cfg.from_email, sendgrid=fetch)
    if as_json:
        print_json([f.as_dict() for f in findings])
    else:
        for f in findings:
            print(f"{f.status} {f.check}: {f.detail}")
            if f.fix:
                print(f"     {f.fix}")
        if fetch is None:
            print("(SendGrid's own domain authentication not checked: no SENDGRID_API_KEY)")
    failed = [f.check for f in findings if f.status == "FAIL"]
    if failed:
        raise NewsletterError(f"{len(failed)} check(s) failed for {name}: {', '.join(failed)}",
                              hint="add the DNS records shown above, then run doctor again")
