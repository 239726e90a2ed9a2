"""The console's people on both databases: argon2 hashes only, roles, sign-in with the
same answer for every refusal, failures slowing the next try per name and per address,
sessions that end after idle time, at sign-out, when the person is disabled or given a
new password; every change and sign-in in the chained log. And `dunning users`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sealed import MASTER_KEY
from sqlalchemy import select
from test_cli import dunning

from worker.contact_log import ContactLog
from worker.db.schema import sessions, users
from worker.users.people import IDLE, People, PersonProblem

NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"


def access(log: ContactLog) -> list[tuple[str, str, str]]:
    return [(r["kind"], r["status"], r["detail"]["user"]) for r in log.history() if r["kind"] in ("user", "access")]


def test_a_person_is_kept_with_an_argon2_hash_and_never_the_password(log: ContactLog) -> None:
    people = People(log)
    person = people.add_user("li.na", "compliance", PASSWORD, NOW, by="admin")
    assert (person.name, person.role) == ("li.na", "compliance")
    with log.engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert [p.name for p in people.people()] == ["li.na"]
    assert access(log) == [("user", "added", "li.na")] and log.verify().intact


@pytest.mark.parametrize(("name", "role", "password", "says"), [
    ("li na", "compliance", PASSWORD, "NAME"), ("li.na", "auditor", PASSWORD, "--role"),
    ("li.na", "compliance", "short", "password: 5 characters; at least 12"),
])
def test_a_bad_person_is_refused_naming_what(log: ContactLog, name: str, role: str, password: str, says: str) -> None:
    people = People(log)
    with pytest.raises(PersonProblem, match=says):
        people.add_user(name, role, password, NOW, by="admin")
    assert people.people() == []


def test_every_refusal_gets_the_same_answer_and_is_recorded(log: ContactLog) -> None:
    people = People(log)
    people.add_user("li.na", "compliance", PASSWORD, NOW, by="admin")
    people.add_user("wang.fang", "operator", PASSWORD, NOW, by="admin")
    people.disable_user("wang.fang", NOW, by="admin")
    assert people.sign_in("li.na", "wrong horse battery", "10.0.0.1", NOW) is None
    assert people.sign_in("nobody", PASSWORD, "10.0.0.1", NOW) is None
    assert people.sign_in("wang.fang", PASSWORD, "10.0.0.1", NOW) is None
    session = people.sign_in("li.na", PASSWORD, "10.0.0.2", NOW)
    assert session is not None and session.user.role == "compliance" and len(session.csrf) >= 32
    failures = [r["detail"] for r in log.history() if r["status"] == "sign-in-failed"]
    assert [(f["user"], f["address"]) for f in failures] == [("li.na", "10.0.0.1"), ("nobody", "10.0.0.1"),
                                                             ("wang.fang", "10.0.0.1")]
    assert all(PASSWORD not in str(r) and "wrong horse" not in str(r) for r in log.history())
    assert log.verify().intact


def test_failures_slow_the_next_try_per_name_and_per_address(log: ContactLog) -> None:
    people = People(log)
    people.add_user("li.na", "compliance", PASSWORD, NOW, by="admin")
    for n in range(3):
        assert people.sign_in_wait("li.na", f"10.0.0.{n}", NOW) == 0
        people.sign_in("li.na", "wrong horse battery", f"10.0.0.{n}", NOW)
    assert people.sign_in_wait("li.na", "10.9.9.9", NOW) == 1.0  # the name, from anywhere
    people.sign_in("li.na", "wrong horse battery", "10.0.0.7", NOW)
    assert people.sign_in_wait("LI.NA", "10.9.9.9", NOW) == 2.0  # doubling; names are compared without case
    for n in range(4):
        people.sign_in(f"guess{n}", "wrong horse battery", "10.6.6.6", NOW)
    assert people.sign_in_wait("someone.else", "10.6.6.6", NOW) == 2.0  # the address, whatever the name
    assert people.sign_in_wait("li.na", "10.9.9.9", NOW + timedelta(minutes=16)) == 0  # the window has passed


def test_a_session_ends_when_idle_at_sign_out_and_when_its_person_changes(log: ContactLog) -> None:
    people = People(log)
    people.add_user("li.na", "compliance", PASSWORD, NOW, by="admin")
    first = people.sign_in("li.na", PASSWORD, "10.0.0.1", NOW)
    assert first is not None
    with log.engine.connect() as conn:
        assert first.token not in str(conn.execute(select(sessions)).all())  # only its SHA-256
    assert people.session(first.token, NOW + IDLE - timedelta(seconds=1)) is not None
    assert people.session(first.token, NOW + IDLE + IDLE) is None  # unused for longer than IDLE
    assert people.session("forged-token", NOW) is None
    second = people.sign_in("li.na", PASSWORD, "10.0.0.1", NOW)
    assert second is not None and people.sign_out(second.token, NOW, "10.0.0.1")
    assert people.session(second.token, NOW) is None and not people.sign_out(second.token, NOW, "10.0.0.1")
    third = people.sign_in("li.na", PASSWORD, "10.0.0.1", NOW)
    assert third is not None and people.set_password("li.na", "another long password", NOW, by="li.na")
    assert people.session(third.token, NOW) is None and people.sign_in("li.na", PASSWORD, "10.0.0.1", NOW) is None
    fourth = people.sign_in("li.na", "another long password", "10.0.0.1", NOW)
    assert fourth is not None and people.disable_user("li.na", NOW, by="admin")
    assert people.session(fourth.token, NOW) is None
    assert [status for _kind, status, _user in access(log)] == [
        "added", "signed-in", "signed-in", "signed-out", "signed-in", "password-changed", "sign-in-failed",
        "signed-in", "disabled"]


def test_the_cli_adds_lists_disables_and_changes_passwords(tmp_path: Path) -> None:
    env = {"DUNNING_DATABASE_URL": f"sqlite:///{tmp_path}/dunning.db"}
    assert dunning("migrate", env=env).returncode == 0
    added = dunning("users", "add", "li.na", "--role", "compliance", "--password-stdin",
                    stdin=f"{PASSWORD}\n".encode(), env=env)
    assert added.returncode == 0 and "li.na: added (compliance)" in added.stdout, added.stderr
    short = dunning("users", "add", "wang", "--role", "admin", "--password-stdin", stdin=b"short\n", env=env)
    assert short.returncode == 1 and "at least 12" in short.stderr
    listed = dunning("users", "list", env=env)
    assert "li.na" in listed.stdout and "compliance" in listed.stdout and "argon2" not in listed.stdout
    assert dunning("users", "passwd", "li.na", "--password-stdin", stdin=b"a brand new passphrase\n",
                   env=env).returncode == 0
    people = People(ContactLog.open(env["DUNNING_DATABASE_URL"], MASTER_KEY))
    assert people.sign_in("li.na", "a brand new passphrase", "127.0.0.1", NOW) is not None
    assert dunning("users", "disable", "li.na", env=env).returncode == 0
    assert dunning("users", "disable", "li.na", env=env).returncode == 1
    assert people.sign_in("li.na", "a brand new passphrase", "127.0.0.1", NOW) is None


def test_old_sessions_are_forgotten_as_new_ones_open(log: ContactLog) -> None:
    people = People(log)
    people.add_user("li.na", "compliance", PASSWORD, NOW, by="admin")
    old = people.sign_in("li.na", PASSWORD, "10.0.0.1", NOW)
    assert old is not None and people.sign_out(old.token, NOW, "10.0.0.1")
    people.sign_in("li.na", PASSWORD, "10.0.0.1", NOW + timedelta(days=2))
    with log.engine.connect() as conn:
        assert conn.execute(select(sessions.c.created_at)).scalars().all() == [NOW + timedelta(days=2)]
