"""Webhook signatures as the Standard Webhooks reference library verifies them (a real
peer, not our own verifier), and the secret's setting."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from worker.errors import ConfigError
from worker.settings import Settings
from worker.settings import parse_webhook_secret as parse_secret
from worker.webhooks.signing import signed_headers

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def test_the_reference_library_verifies_what_we_sign_and_refuses_a_changed_body() -> None:
    body = json.dumps({"type": "reminder.sent", "data": {"job_id": "INV-1/due_day"}}).encode()
    headers = signed_headers(parse_secret(SECRET), "msg_2Kq1", datetime.now(UTC), body)  # the verifier reads the clock
    assert Webhook(SECRET).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b"sent", b"fail"), headers)
    other = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)


@pytest.mark.parametrize("bad", ["plain-secret", "whsec_!!!not-base64!!!",
                                 "whsec_" + base64.b64encode(b"short").decode()])
def test_a_bad_secret_is_refused_naming_the_variable(bad: str) -> None:
    with pytest.raises(ConfigError, match="DUNNING_WEBHOOK_SECRET"):
        Settings.from_env({"DUNNING_WEBHOOK_SECRET": bad, "DUNNING_WEBHOOK_URL": "https://erp.example/h"})


@pytest.mark.parametrize(("env", "says"), [
    ({"DUNNING_WEBHOOK_URL": "ftp://erp.example/h", "DUNNING_WEBHOOK_SECRET": SECRET}, "DUNNING_WEBHOOK_URL: an http"),
    ({"DUNNING_WEBHOOK_URL": "https:///no-host", "DUNNING_WEBHOOK_SECRET": SECRET}, "DUNNING_WEBHOOK_URL: an http"),
    ({"DUNNING_WEBHOOK_URL": "https://erp.example/h"}, "DUNNING_WEBHOOK_SECRET is not"),
    ({"DUNNING_WEBHOOK_SECRET": SECRET}, "DUNNING_WEBHOOK_URL is not"),
])
def test_the_endpoint_needs_a_url_and_its_secret(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        Settings.from_env(env)


def test_the_secret_is_never_in_the_settings_repr() -> None:
    settings = Settings.from_env({"DUNNING_WEBHOOK_SECRET": SECRET, "DUNNING_WEBHOOK_URL": "https://erp.example/h"})
    assert settings.webhook_secret == parse_secret(SECRET) and SECRET[6:20] not in repr(settings)
    assert "erp.example" not in repr(settings)  # an endpoint's URL may carry a token
