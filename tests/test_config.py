from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import find_project_dir, load_settings
from newsletter.errors import ConfigError


def _project(tmp_path: Path, body: str = "") -> Path:
    (tmp_path / "pyproject.toml").write_text(f"[tool.newsletter]\n{body}\n", "utf-8")
    return tmp_path


def test_pyproject_then_environment_then_overrides(tmp_path, monkeypatch) -> None:
    root = _project(tmp_path, 'organisation = "From TOML"\nconcurrency = 3\n')
    assert load_settings(root).organisation == "From TOML"
    monkeypatch.setenv("NEWSLETTER_ORGANISATION", "From env")
    monkeypatch.setenv("NEWSLETTER_CONCURRENCY", "7")
    cfg = load_settings(root)
    assert (cfg.organisation, cfg.concurrency) == ("From env", 7)
    assert load_settings(root, concurrency=2).concurrency == 2


def test_default_database_is_sqlite_in_project_dir(tmp_path) -> None:
    root = _project(tmp_path)
    assert load_settings(root).resolved_database_url == f"sqlite:///{root.resolve()}/newsletter.db"


def test_project_dir_found_from_a_subdirectory(tmp_path, monkeypatch) -> None:
    root = _project(tmp_path)
    sub = root / "issues" / "articles"
    sub.mkdir(parents=True)
    monkeypatch.delenv("NEWSLETTER_PROJECT_DIR", raising=False)
    assert find_project_dir(sub) == root.resolve()


def test_secrets_never_appear_in_repr(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.very-secret-key")
    monkeypatch.setenv("NEWSLETTER_SECRET", "hmac-secret-value")
    cfg = load_settings(_project(tmp_path))
    assert cfg.sendgrid_api_key.get_secret_value() == "SG.very-secret-key"
    assert "very-secret" not in repr(cfg) and "hmac-secret" not in repr(cfg)


def test_invalid_setting_names_the_setting(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NEWSLETTER_CONCURRENCY", "lots")
    with pytest.raises(ConfigError, match="concurrency"):
        load_settings(_project(tmp_path))


def test_unknown_setting_in_pyproject_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="colour"):
        load_settings(_project(tmp_path, 'colour = "blue"'))


def test_outbox_directory_from_newsletter_outbox(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NEWSLETTER_OUTBOX", "/srv/outbox")
    assert load_settings(_project(tmp_path)).resolved_outbox_dir == Path("/srv/outbox")


@pytest.mark.parametrize("host", [
    "https://api.sendgrid.com", "https://api.eu.sendgrid.com", "http://127.0.0.1:4010", "http://127.8.9.1",
    "http://localhost:4010", "http://[::1]:4010",
])
def test_sendgrid_host_https_or_loopback_http_is_accepted(tmp_path, monkeypatch, host: str) -> None:
    monkeypatch.setenv("SENDGRID_HOST", host)
    assert load_settings(_project(tmp_path)).sendgrid_host == host


@pytest.mark.parametrize("host", [
    "http://api.sendgrid.com", "http://10.0.0.5:4010", "http://localhost.evil.example", "ftp://api.sendgrid.com",
    "api.sendgrid.com", "https://",
])
def test_sendgrid_host_refuses_plain_http_to_other_hosts(tmp_path, monkeypatch, host: str) -> None:
    monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", host)
    with pytest.raises(ConfigError, match="sendgrid_host.*https://") as caught:
        load_settings(_project(tmp_path))
    assert caught.value.exit_code == 2


def test_cli_refuses_plain_http_sendgrid_host(tmp_path, monkeypatch, cli) -> None:
    monkeypatch.setenv("NEWSLETTER_PROJECT_DIR", str(_project(tmp_path)))
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.very-secret-key")
    monkeypatch.setenv("SENDGRID_HOST", "http://api.sendgrid.com")
    result = cli("send", "x.yaml", "--yes", "--transport", "sendgrid")
    assert result.exit_code == 2 and "sendgrid_host" in result.stderr
    assert "very-secret" not in result.stderr + result.stdout


@pytest.mark.parametrize("url", ["http://www.example.org/n", "https://x.org/n?a=1&b=2", 'https://x.org/"n',
                                 "/newsletter", "https://x.org/n<script>"])
def test_public_base_url_must_be_plain_https(tmp_path, monkeypatch, url: str) -> None:
    monkeypatch.setenv("NEWSLETTER_PUBLIC_BASE_URL", url)
    with pytest.raises(ConfigError, match="public_base_url"):
        load_settings(_project(tmp_path))


def test_a_copy_with_another_database_resolves_to_that_database(tmp_path) -> None:
    cfg = load_settings(_project(tmp_path))
    assert cfg.resolved_database_url.endswith("/newsletter.db")
    other = cfg.model_copy(update={"database_url": "sqlite:////tmp/other.db"})
    assert other.resolved_database_url == "sqlite:////tmp/other.db"
