"""CLI: `newsletter serve`: the member web and the SendGrid event webhook.

The CLI never imports newsletter.web ("two faces, one core"): uvicorn loads the app from its import
string, `newsletter.web:create_app`, in each worker.
"""

from __future__ import annotations

from typing import Annotated

import typer

from newsletter.cli.common import database, err_console, settings

APP_FACTORY = "newsletter.web:create_app"


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("serve")(serve_command)


def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (use PostgreSQL for more than one).", min=1)] = 1,
    proxy_headers: Annotated[bool, typer.Option(
        "--proxy-headers/--no-proxy-headers",
        help="Trust X-Forwarded-For/-Proto from --forwarded-allow-ips (behind a reverse proxy).")] = False,
    forwarded_allow_ips: Annotated[str, typer.Option(
        help="Comma-separated proxy addresses whose X-Forwarded-* headers are trusted.")] = "127.0.0.1",
    root_path: Annotated[str, typer.Option(
        help="Path prefix the proxy serves the app under, e.g. /newsletter.")] = "",
) -> None:
    """Serve the member pages (unsubscribe, preferences, sign-up, archive) and the SendGrid event webhook."""
    import uvicorn

    from newsletter.delivery import token_keys

    cfg = settings()
    with database(cfg) as db:  # refuse to start without a usable secret and database
        token_keys(db, cfg)
    if workers > 1 and cfg.resolved_database_url.startswith("sqlite"):
        err_console.print("note: several workers share one SQLite file; PostgreSQL suits them better", markup=False)
    err_console.print(f"serving on http://{host}:{port}{root_path} (Ctrl-C to stop)", markup=False)
    uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=workers, proxy_headers=proxy_headers,
                forwarded_allow_ips=forwarded_allow_ips, root_path=root_path, server_header=False,
                date_header=True, log_level="info")
