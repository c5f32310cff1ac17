"""The member web (`newsletter serve`): one-click unsubscribe, preferences, sign-up with double
opt-in, the archive, and SendGrid's event webhook. It calls the same service functions as the CLI
(newsletter.members, newsletter.delivery); nothing but uvicorn's import string loads it."""

from newsletter.web.app import create_app

__all__ = ["create_app"]
