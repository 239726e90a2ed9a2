"""No published secrets: `dunning serve` and `dunning worker` refuse to start without a
signing key of their own, and unsubscribe tokens that we did not mint are refused
(404, never 500), however they are mangled."""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import serving
from sealed import MASTER_KEY_TEXT
from test_cli import dunning
from test_serve import NOW, SECRET, _send

from worker.contact_log import ContactLog
from worker.messages import unsubscribe


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["worker", "--processes", "1"]])
@pytest.mark.parametrize("key", ["", "short-key"])
def test_long_running_commands_refuse_to_start_without_a_strong_key(command: list[str], key: str,
                                                                    tmp_path: Path) -> None:
    result = dunning(*command, env={"DUNNING_SECRET_KEY": key, "DUNNING_DATABASE_URL": f"sqlite:///{tmp_path}/l.db",
                                    "DUNNING_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.returncode == 2
    assert "not starting: DUNNING_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_plain_http_public_url_is_warned_about() -> None:
    from worker.settings import Settings, require_secrets

    keys = {"DUNNING_SECRET_KEY": SECRET, "DUNNING_MASTER_KEY": MASTER_KEY_TEXT}
    settings = Settings.from_env({**keys, "DUNNING_PUBLIC_URL": "http://billing.example.com"})
    assert any("https" in warning for warning in require_secrets(settings))
    secure = Settings.from_env({**keys, "DUNNING_PUBLIC_URL": "https://billing.example.com"})
    assert require_secrets(secure) == []


def test_deploy_files_require_the_key() -> None:
    root = Path(__file__).parent.parent / "deploy"
    assert "${DUNNING_SECRET_KEY:?" in (root / "compose.yaml").read_text()
    for name in ("worker.yaml", "serve.yaml"):
        manifest = (root / "kubernetes" / name).read_text()
        assert "name: DUNNING_SECRET_KEY" in manifest and "optional: false" in manifest, name


@pytest.fixture()
def served_url(log: ContactLog) -> Iterator[str]:
    with serving(log, {"DUNNING_SECRET_KEY": SECRET}, lambda: NOW) as url:
        yield url


def test_mangled_tokens_are_refused_with_404(served_url: str, log: ContactLog) -> None:
    address = "zhang.wei@example.com"
    genuine = unsubscribe.token(SECRET, "ACC-1", "email", address)
    body, _, signature = genuine.partition(".")
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "-_.~é张\u00ff"
    tokens = [body, f"{body}.", f"{body}.{signature[:-1]}", f"{body}.{signature}é", f"{body}.张伟{signature[2:]}",
              f"{body[:-2]}.{signature}", f".{signature}", "é.é"]
    tokens += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))) for _ in range(60)]
    for token in tokens:
        quoted = __import__("urllib.parse").parse.quote(token, safe="")
        for method, data in (("GET", {}), ("POST", {"List-Unsubscribe": "One-Click"})):
            assert _send(f"{served_url}/u/{quoted}", data, method=method) == 404, (method, token)
    assert not log.suppressed(address)
    assert _send(f"{served_url}/u/{genuine}", {"List-Unsubscribe": "One-Click"}) == 200
    assert log.suppressed(address)


def test_a_bad_setting_is_named_without_a_traceback(tmp_path: Path) -> None:
    result = dunning("worker", "--check", env={"DUNNING_BROKER_HEARTBEAT_MS": "soon"})
    assert result.returncode == 2
    assert "configuration: DUNNING_BROKER_HEARTBEAT_MS: 'soon' is not a positive whole number" in result.stderr
    assert "Traceback" not in result.stderr
    rate = dunning("worker", "--check", env={"DUNNING_SMS_PER_SECOND": "fast"})
    assert "DUNNING_SMS_PER_SECOND: 'fast' is not a positive number" in rate.stderr and rate.returncode == 2


def test_smtp_credentials_come_from_the_settings() -> None:
    from worker.settings import Settings

    settings = Settings.from_env({"DUNNING_SMTP_USERNAME": "relay-user", "DUNNING_SMTP_PASSWORD": "hunter2"})
    assert (settings.smtp_username, settings.smtp_password) == ("relay-user", "hunter2")
    assert "hunter2" not in repr(settings), "secrets stay out of repr (and so out of logs)"


def test_deploy_files_require_the_master_key_and_purge_daily() -> None:
    import yaml

    root = Path(__file__).parent.parent / "deploy"
    assert "${DUNNING_MASTER_KEY:?" in (root / "compose.yaml").read_text()
    for name in ("worker.yaml", "serve.yaml", "records-purge.yaml", "forewarn.yaml"):
        manifest = (root / "kubernetes" / name).read_text()
        assert "name: DUNNING_MASTER_KEY" in manifest and "optional: false" in manifest, name
    cron = yaml.safe_load((root / "kubernetes" / "records-purge.yaml").read_text())
    assert cron["kind"] == "CronJob" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    [container] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == ["dunning", "records", "purge"]
    assert "ExecStart=/opt/dunning/bin/dunning records purge" in (root / "systemd/dunning-records-purge.service"
                                                                   ).read_text()


def test_deploy_files_forewarn_daily() -> None:
    import yaml

    root = Path(__file__).parent.parent / "deploy"
    cron = yaml.safe_load((root / "kubernetes" / "forewarn.yaml").read_text())
    assert cron["kind"] == "CronJob" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    [container] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == ["dunning", "forewarn", "--to"]
    assert "ExecStart=/opt/dunning/bin/dunning forewarn --to" in (root / "systemd/dunning-forewarn.service").read_text()
    assert "OnCalendar=" in (root / "systemd/dunning-forewarn.timer").read_text()
