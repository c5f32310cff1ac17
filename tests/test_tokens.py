"""Unsubscribe / preferences tokens: HMAC-SHA256, URL-safe, purpose-bound, secret kept per database."""

from __future__ import annotations

import re

from pydantic import SecretStr

from newsletter.config import Settings
from newsletter.db import Database
from newsletter.delivery.tokens import (
    PREFERENCES,
    UNSUBSCRIBE,
    make_token,
    token_secret,
    verify_token,
)


def test_round_trip_and_url_safe() -> None:
    token = make_token(b"k" * 32, 12345, UNSUBSCRIBE)
    assert re.fullmatch(r"12345\.[A-Za-z0-9_-]{43}", token)
    assert verify_token(b"k" * 32, token, UNSUBSCRIBE) == 12345


def test_rejects_forgery_other_purpose_other_secret_and_garbage() -> None:
    secret = "s3cret"
    token = make_token(secret, 7, UNSUBSCRIBE)
    ident, mac = token.split(".")
    assert verify_token(secret, token, PREFERENCES) is None
    assert verify_token("other", token, UNSUBSCRIBE) is None
    assert verify_token(secret, f"8.{mac}", UNSUBSCRIBE) is None  # someone else's id
    assert verify_token(secret, f"{ident}.{mac[:-1]}A", UNSUBSCRIBE) is None
    for junk in ("", "7", "7.", ".abc", "x.y", "-1." + mac, "7." + mac + "é", "9" * 40 + "." + mac):
        assert verify_token(secret, junk, UNSUBSCRIBE) is None


def test_generated_secret_is_stable_per_database(db: Database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(project_dir=tmp_path)
    first = token_secret(db, settings)
    assert len(first) >= 32 and token_secret(db, settings) == first


def test_configured_secret_wins(db: Database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(project_dir=tmp_path, secret=SecretStr("from-env"))
    assert token_secret(db, settings) == b"from-env"
    assert "from-env" not in repr(settings)


def test_fast_token_maker_equals_make_token() -> None:
    from newsletter.delivery.tokens import TokenMaker

    for secret in (b"", b"short", b"x" * 64, b"y" * 65, "ünïcode secret" * 10):
        for purpose in (UNSUBSCRIBE, PREFERENCES):
            maker = TokenMaker(secret, purpose)
            for subscriber_id in (0, 1, 42, 10**12):
                assert maker(subscriber_id) == make_token(secret, subscriber_id, purpose)
