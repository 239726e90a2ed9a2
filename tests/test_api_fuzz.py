"""schemathesis against `GET /v1/openapi.json`, with a valid key, over real HTTP: bounded
examples per operation, and two questions only — no 5xx, and every answer conforms to the
description (status code, content type, body schema). Whether the description is as strict
as the job contract's validators (currencies, locales, zones) is not asked: it is looser,
and the API's 422s say why."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from harness import serving

from worker.contact_log import ContactLog
from worker.users.keys import Keys, parse_scopes

NOW = datetime.fromisoformat("2026-12-02T10:00:00+08:00")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_no_5xx_and_every_answer_conforms(log: ContactLog, redis_server: Any, redis_client: Any) -> None:
    if log.engine.dialect.name != "sqlite":
        pytest.skip("one database is enough for the fuzzer; the contract tests run on both")
    key = Keys(log).create_key("fuzz", parse_scopes("jobs:write,events:write,read"), NOW, "test")
    env = {"DUNNING_REDIS_URL": redis_server.url, "DUNNING_SECRET_KEY": "k" * 32}
    with serving(log, env, lambda: NOW) as url:
        run = subprocess.run([str(Path(sys.executable).parent / "st"), "run", f"{url}/v1/openapi.json",
                              "-H", f"Authorization: Bearer {key}", "--max-examples", "25", "--checks", CHECKS,
                              "--request-timeout", "20", "--seed", "20261202", "--no-color"],
                             capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "passed" in run.stdout
