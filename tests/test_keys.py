"""`dunning keys`: a key is printed once and kept nowhere but as a hash; making and
revoking one is in the chained log; `authenticate` knows live keys only."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sealed import MASTER_KEY
from test_cli import dunning

from worker.contact_log import ContactLog
from worker.users.keys import KeyProblem, Keys, parse_scopes

NOW = datetime.fromisoformat("2026-12-02T10:00:00+08:00")


def test_a_key_is_shown_once_stored_as_a_hash_listed_without_it_and_revoked(tmp_path: Path) -> None:
    database = tmp_path / "dunning.db"
    env = {"DUNNING_DATABASE_URL": f"sqlite:///{database}"}
    assert dunning("migrate", env=env).returncode == 0
    made = dunning("keys", "create", "erp-prod", "--scopes", "jobs:write,read", "--by", "alice", env=env)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert made.stdout.strip() == key, "the key alone on stdout's last line"
    assert key.startswith("dk_") and len(key) >= 40
    listed = dunning("keys", "list", env={**env, "COLUMNS": "200"})
    assert "erp-prod" in listed.stdout and "jobs:write, read" in listed.stdout
    assert key not in listed.stdout and key[12:] not in database.read_bytes().decode("latin-1"), "kept nowhere"
    assert dunning("keys", "create", "erp-prod", "--scopes", "read", env=env).returncode == 1, "names are unique"
    revoked = dunning("keys", "revoke", "erp-prod", "--by", "bob", env=env)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert dunning("keys", "revoke", "erp-prod", env=env).returncode == 1, "already revoked"
    log = ContactLog.open(env["DUNNING_DATABASE_URL"], MASTER_KEY)
    events = [(r["kind"], r["status"], r["detail"]["name"], r["detail"]["by"]) for r in log.history()]
    assert events == [("key", "created", "erp-prod", "alice"), ("key", "revoked", "erp-prod", "bob")]
    assert log.verify().intact
    log.engine.dispose()


def test_a_bad_scope_is_named(tmp_path: Path) -> None:
    env = {"DUNNING_DATABASE_URL": f"sqlite:///{tmp_path}/dunning.db"}
    assert dunning("migrate", env=env).returncode == 0
    bad = dunning("keys", "create", "x", "--scopes", "jobs:write,admin", env=env)
    assert bad.returncode == 1 and "--scopes: admin" in bad.stderr and "jobs:write, events:write, read" in bad.stderr
    assert bad.stdout == ""


def test_only_a_live_key_authenticates_and_carries_its_scopes(log: ContactLog) -> None:
    keys = Keys(log)
    key = keys.create_key("billing", parse_scopes("events:write"), NOW, "test")
    found = keys.authenticate(key, NOW + timedelta(seconds=5))
    assert found is not None and found.name == "billing" and found.scopes == {"events:write"}
    assert keys.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B"), NOW) is None, "one character off"
    assert keys.authenticate("Bearer " + key, NOW) is None and keys.authenticate("", NOW) is None
    assert [k.last_used_at for k in keys.api_keys()] == [NOW + timedelta(seconds=5)]
    assert keys.revoke_key("billing", NOW, "test")
    assert keys.authenticate(key, NOW + timedelta(seconds=6)) is None, "revoked: refused at once"
    with pytest.raises(KeyProblem, match="NAME"):
        keys.create_key("no spaces please", parse_scopes("read"), NOW, "test")
