"""Member-link tokens: HMAC-SHA256, URL-safe, purpose-bound, one spelling per id, never raising;
the secret comes from the environment or a 0600 file, never from (or into) the database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from datetime import timedelta

import pytest
from pydantic import SecretStr

from newsletter.config import Settings
from newsletter.db import Database
from newsletter.delivery.tokens import (
    PREFERENCES,
    SIGNUP,
    UNSUBSCRIBE,
    LinkTokens,
    TokenKeys,
    make_expiring_token,
    make_form_token,
    make_token,
    move_stored_secret,
    token_keys,
    token_secret,
    verify_expiring_token,
    verify_form_token,
    verify_token,
)
from newsletter.errors import ConfigError
from newsletter.models import Meta, utcnow

SECRET = "s" * 40


def test_round_trip_and_url_safe() -> None:
    token = make_token(b"k" * 32, 12345, UNSUBSCRIBE)
    assert re.fullmatch(r"12345\.[A-Za-z0-9_-]{32}", token)
    assert verify_token(b"k" * 32, token, UNSUBSCRIBE) == 12345


def test_rejects_forgery_other_purpose_other_secret_and_garbage() -> None:
    token = make_token(SECRET, 7, UNSUBSCRIBE)
    ident, mac = token.split(".")
    assert verify_token(SECRET, token, PREFERENCES) is None
    assert verify_token("other" * 10, token, UNSUBSCRIBE) is None
    assert verify_token(SECRET, f"8.{mac}", UNSUBSCRIBE) is None  # someone else's id
    assert verify_token(SECRET, f"{ident}.{mac[:-1]}A", UNSUBSCRIBE) is None
    assert verify_token(SECRET, token[:-5], UNSUBSCRIBE) is None  # truncated
    for junk in ("", "7", "7.", ".abc", "x.y", "-1." + mac, "7." + mac + "é", "9" * 40 + "." + mac,
                 "\u00b2.x", "\u00b2." + mac, token + "\n", " " + token, "7.." + mac):
        assert verify_token(SECRET, junk, UNSUBSCRIBE) is None
    assert verify_token(SECRET, None, UNSUBSCRIBE) is None  # type: ignore[arg-type]


def test_one_spelling_per_id() -> None:
    """`0012`, `+12` or 12 in other digit scripts are not 12 (a token has exactly one form)."""
    mac = make_token(SECRET, 12, UNSUBSCRIBE).split(".")[1]
    assert verify_token(SECRET, f"12.{mac}", UNSUBSCRIBE) == 12
    for ident in ("0012", "012", "+12", "\u0661\u0662", "\uff11\uff12", "\u0967\u0968", "1\u00b2", " 12"):
        mac_for_spelling = make_token(SECRET, 12, UNSUBSCRIBE).split(".")[1]
        assert verify_token(SECRET, f"{ident}.{mac_for_spelling}", UNSUBSCRIBE) is None, ident
    zero = make_token(SECRET, 0, UNSUBSCRIBE)
    assert verify_token(SECRET, zero, UNSUBSCRIBE) == 0
    too_big = 2**63
    assert verify_token(SECRET, f"{too_big}.{mac}", UNSUBSCRIBE) is None


def test_unsubscribe_links_do_not_expire_but_confirmations_do() -> None:
    now = utcnow()
    keys = TokenKeys(SECRET.encode())
    link = make_token(SECRET, 5, UNSUBSCRIBE)
    assert keys.verify(link, UNSUBSCRIBE, now + timedelta(days=400)) == 5  # a year and more later
    confirm = make_expiring_token(SECRET, 9, SIGNUP, now + timedelta(hours=48))
    assert verify_expiring_token(SECRET, confirm, SIGNUP, now + timedelta(hours=47)) == 9
    assert verify_expiring_token(SECRET, confirm, SIGNUP, now + timedelta(hours=49)) is None
    assert verify_expiring_token(SECRET, confirm, UNSUBSCRIBE, now) is None
    ident, expires, mac = confirm.split(".")
    later = str(int(expires) + 86400)
    assert verify_expiring_token(SECRET, f"{ident}.{later}.{mac}", SIGNUP, now) is None  # extended by hand
    assert verify_token(SECRET, confirm, SIGNUP) is None  # not a link token either


def test_form_token_is_bound_to_its_page_and_time() -> None:
    now = utcnow()
    token = make_form_token(SECRET, "p:7.abc", now)
    assert verify_form_token(SECRET, token, "p:7.abc", now + timedelta(minutes=5))
    assert not verify_form_token(SECRET, token, "p:8.abc", now)
    assert not verify_form_token(SECRET, token, "p:7.abc", now + timedelta(hours=13))
    assert not verify_form_token(SECRET, "", "p:7.abc", now)
    assert not verify_form_token(SECRET, "\u00b2.x", "p:7.abc", now)


def test_rotation_keeps_old_links_valid_until_the_grace_period_ends() -> None:
    old, new = "o" * 40, "n" * 40
    now = utcnow()
    keys = TokenKeys(new.encode(), old.encode(), now + timedelta(days=30))
    sent_before = make_token(old, 3, UNSUBSCRIBE)
    assert keys.verify(sent_before, UNSUBSCRIBE, now) == 3
    assert keys.verify(make_token(new, 3, UNSUBSCRIBE), UNSUBSCRIBE, now) == 3
    assert keys.verify(sent_before, UNSUBSCRIBE, now + timedelta(days=31)) is None
    assert "o" * 10 not in repr(keys) and "n" * 10 not in repr(keys)


def test_secret_is_required_and_never_generated(db: Database, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_FILE"):
        token_keys(db, Settings(project_dir=tmp_path))
    with db.session() as session:
        assert session.get(Meta, "token_secret") is None
    with pytest.raises(ConfigError, match="shorter than 32"):
        token_keys(db, Settings(project_dir=tmp_path, secret=SecretStr("short")))


def test_configured_secret_wins(db: Database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(project_dir=tmp_path, secret=SecretStr("from-env-" + "e" * 30))
    assert token_secret(db, settings) == ("from-env-" + "e" * 30).encode()
    assert "from-env" not in repr(settings)


def test_secret_file_must_be_0600(db: Database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "secret"
    path.write_text("f" * 48 + "\n")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="mode 0644") as caught:
        token_keys(db, Settings(project_dir=tmp_path, secret_file=path))
    assert "chmod 600" in (caught.value.hint or "")
    os.chmod(path, 0o600)
    assert token_secret(db, Settings(project_dir=tmp_path, secret_file=path)) == b"f" * 48


def test_previous_secret_needs_an_end_date(db: Database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(project_dir=tmp_path, secret=SecretStr("n" * 40), secret_previous=SecretStr("o" * 40))
    with pytest.raises(ConfigError, match="UNTIL"):
        token_keys(db, settings)


def test_a_secret_stored_by_an_earlier_version_must_be_moved_out(db: Database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Earlier versions generated a secret into `meta`: sending refuses until it is moved to a
    0600 file, and links signed with it keep working from that file."""
    legacy = "legacy-generated-secret-" + "l" * 20
    with db.write_session() as session:
        session.add(Meta(key="token_secret", value=legacy))
    settings = Settings(project_dir=tmp_path, secret=SecretStr("n" * 40))
    with pytest.raises(ConfigError, match="in clear"):
        token_keys(db, settings)
    path = tmp_path / "moved-secret"
    assert move_stored_secret(db, path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with db.session() as session:
        assert session.get(Meta, "token_secret") is None
    keys = token_keys(db, Settings(project_dir=tmp_path, secret_file=path))
    assert keys.verify(make_token(legacy, 4, UNSUBSCRIBE), UNSUBSCRIBE) == 4
    assert not move_stored_secret(db, tmp_path / "again")
    with pytest.raises(ConfigError, match="already exists"):
        from newsletter.delivery.tokens import write_secret_file

        write_secret_file(path, "x" * 40)


def test_fast_link_tokens_equal_make_token() -> None:
    for secret in (b"", b"short", b"x" * 64, b"y" * 65, "ünïcode secret" * 10):
        links = LinkTokens(secret)
        for subscriber_id in (0, 1, 42, 10**12, 2**63 - 1):
            unsubscribe, preferences = links(subscriber_id)
            assert unsubscribe == make_token(secret, subscriber_id, UNSUBSCRIBE)
            assert preferences == make_token(secret, subscriber_id, PREFERENCES)
            assert unsubscribe != preferences
            assert verify_token(secret, unsubscribe, UNSUBSCRIBE) == subscriber_id
            assert verify_token(secret, preferences, PREFERENCES) == subscriber_id
            assert verify_token(secret, unsubscribe, PREFERENCES) is None  # one purpose each
            assert verify_token(secret, preferences, UNSUBSCRIBE) is None
            assert verify_token(secret, unsubscribe, SIGNUP) is None


def test_the_links_of_a_whole_batch_are_each_members_own() -> None:
    from newsletter.delivery.tokens import LINK_MAC_LENGTH

    links = LinkTokens(b"z" * 40)
    ids = [7, 0, 10**12, 7, 2**63 - 1, 123456]
    macs = links.macs(ids)
    assert len(macs) == 2 * LINK_MAC_LENGTH * len(ids)
    for i, subscriber_id in enumerate(ids):
        at = 2 * LINK_MAC_LENGTH * i
        unsubscribe, preferences = links(subscriber_id)
        assert unsubscribe == f"{subscriber_id}.{macs[at:at + LINK_MAC_LENGTH]}"
        assert preferences == f"{subscriber_id}.{macs[at + LINK_MAC_LENGTH:at + 2 * LINK_MAC_LENGTH]}"
    assert links.macs([]) == ""


def _hmac_link(secret: str, subscriber_id: int, purpose: str) -> str:
    """A link as sent before the one-digest form: <id>.<HMAC-SHA256(secret, "<purpose>:<id>")>."""
    digest = hmac.new(secret.encode(), f"{purpose}:{subscriber_id}".encode(), hashlib.sha256).digest()
    return f"{subscriber_id}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def test_links_in_emails_sent_before_the_one_digest_form_keep_working() -> None:
    """Unsubscribe links never expire: the 43-character HMAC links already in mailboxes are still
    checked, for their own purpose and member only, and through a secret rotation."""
    old_unsubscribe, old_preferences = _hmac_link(SECRET, 31, UNSUBSCRIBE), _hmac_link(SECRET, 31, PREFERENCES)
    assert re.fullmatch(r"31\.[A-Za-z0-9_-]{43}", old_unsubscribe)
    assert verify_token(SECRET, old_unsubscribe, UNSUBSCRIBE) == 31
    assert verify_token(SECRET, old_preferences, PREFERENCES) == 31
    assert verify_token(SECRET, old_unsubscribe, PREFERENCES) is None
    assert verify_token(SECRET, "32." + old_unsubscribe.split(".")[1], UNSUBSCRIBE) is None
    now = utcnow()
    rotated = TokenKeys(("n" * 40).encode(), SECRET.encode(), now + timedelta(days=30))
    new_link = make_token("n" * 40, 31, UNSUBSCRIBE)
    made_with_previous = make_token(SECRET, 31, UNSUBSCRIBE)
    for token in (old_unsubscribe, made_with_previous, new_link):
        assert rotated.verify(token, UNSUBSCRIBE, now) == 31
    for token in (old_unsubscribe, made_with_previous):  # the previous secret's grace period is over
        assert rotated.verify(token, UNSUBSCRIBE, now + timedelta(days=31)) is None
    assert rotated.verify(new_link, UNSUBSCRIBE, now + timedelta(days=31)) == 31


def test_secret_generate_writes_a_private_file_and_never_overwrites(tmp_path, cli, project) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "secret"
    result = cli("secret", "generate", str(path))
    assert result.exit_code == 0, result.stderr
    value = path.read_text().strip()
    assert len(value) >= 32 and oct(path.stat().st_mode & 0o777) == "0o600"
    assert value not in result.stdout + result.stderr  # the secret itself is never printed
    again = cli("secret", "generate", str(path))
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert path.read_text().strip() == value


def test_send_without_a_secret_says_what_to_set(cli, project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("NEWSLETTER_SECRET")
    result = cli("send", "issues/2026-12.yaml", "--yes", "--transport", "memory")
    assert result.exit_code == 2
    assert "NEWSLETTER_SECRET_FILE" in result.stderr
