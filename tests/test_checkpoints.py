"""Signed checkpoints of every chain's head: the C2SP signed-note format (checked against
the Go reference's own vectors), what a checkpoint proves later (a chain cut short or
rewritten after it is named), and the commands an auditor runs."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from worker.contact_log import ContactLog
from worker.contact_log.checkpoints import Checkpoints
from worker.contact_log.kinds import Event, InvoiceStatus, Kind
from worker.contact_log.note import Checkpoint, NoteError, Signer, Verifier, keygen, merkle_root
from worker.loops import checkpointer

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
DUNNING = str(Path(sys.executable).parent / "dunning")
# golang.org/x/mod/sumdb/note's documented example: its key pair and a note it signed.
GO_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_NOTE = ("If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n"
           "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6R"
           "yyBwJnAM=\n")


class _Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def test_notes_are_signed_and_opened_as_the_go_reference_does() -> None:
    signer, verifier = Signer.parse(GO_SIGNER), Verifier.parse(GO_VERIFIER)
    text_ = verifier.open(GO_NOTE)
    assert text_.startswith("If you think") and signer.verifier() == GO_VERIFIER
    assert signer.sign(text_) == GO_NOTE  # Ed25519 is deterministic: the very same signature line
    with pytest.raises(NoteError, match="altered"):
        verifier.open(GO_NOTE.replace("cryptography", "encryption"))
    other = Verifier.parse(keygen("PeterNeumann")[1])
    with pytest.raises(NoteError, match="no signature by PeterNeumann"):
        other.open(GO_NOTE)
    with pytest.raises(NoteError, match="name"):
        keygen("has space")


def test_the_root_is_rfc_6962s_merkle_tree_hash() -> None:
    leaves = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43", bytes(range(0x50, 0x58)),
              bytes(range(0x60, 0x70))]  # the certificate-transparency test vectors
    assert merkle_root(leaves[:1]).hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert merkle_root(leaves[:5]).hex() == "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"
    assert merkle_root(leaves).hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


def pay(log: ContactLog, account: str, invoice: str) -> None:
    log.record(Event(Kind.INVOICE, InvoiceStatus.PAID, invoice_id=invoice, account_id=account), NOW)


def test_a_checkpoint_proves_later_that_no_chain_was_cut_short_or_rewritten(log: ContactLog, tmp_path: Path) -> None:
    private, public = keygen("billing.example.com/dunning")
    signer, verifier, book = Signer.parse(private), Verifier.parse(public), Checkpoints(log)
    for n in range(6):
        pay(log, f"ACME-{n}", f"INV-{n}")
    note = book.make(signer, NOW, tmp_path / "kept")
    assert note is not None and [p.read_text() for p in (tmp_path / "kept").iterdir()] == [note]
    seen = Checkpoint.parse(verifier.open(note))
    assert seen.origin == "billing.example.com/dunning" and seen.size == 6 and len(seen.heads) == 65
    assert book.make(signer, NOW + timedelta(seconds=10)) is None, "nothing new: no new checkpoint"
    pay(log, "ACME-0", "INV-9")  # the log goes on: it still extends the checkpoint
    assert book.check(note, verifier) == [] and book.latest() == note
    assert book.make(signer, NOW + timedelta(seconds=20)) not in (None, note)

    with log.engine.begin() as conn:  # the last two events of ACME-0's chain go: cut short past the checkpoint
        conn.execute(text("DELETE FROM events WHERE account_id = 'ACME-0'"))
    [problem] = book.check(note, verifier, account="ACME-0")
    assert problem.startswith("chain ") and "cut short" in problem
    assert log.verify(account="ACME-1").intact and book.check(note, verifier, account="ACME-1") == []
    with log.engine.begin() as conn:
        conn.execute(text("UPDATE events SET digest = :d WHERE account_id = 'ACME-1'"), {"d": "f" * 64})
    assert any("rewritten" in p for p in book.check(note, verifier))
    assert book.check(note.replace("\n6\n", "\n7\n"), verifier) == [
        "the signature by billing.example.com/dunning does not match the text: the checkpoint was altered"]


def test_the_worker_makes_one_while_events_come_in(log: ContactLog, tmp_path: Path) -> None:
    signer, clock = Signer.parse(keygen("dunning.test/log")[0]), _Clock(NOW)
    kept = tmp_path / "kept"
    step = checkpointer(Checkpoints(log), signer, clock, kept, 10.0)
    assert step() == 10.0 and len(list(kept.iterdir())) == 1  # the first, of an empty log
    clock.at += timedelta(seconds=10)
    step()
    assert len(list(kept.iterdir())) == 1, "nothing new, nothing made"
    pay(log, "ACME-1", "INV-1")
    clock.at += timedelta(seconds=10)
    step()
    assert len(list(kept.iterdir())) == 2


def test_the_commands_an_auditor_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/dunning.db"
    log = ContactLog.open(url, None).migrate()
    env = {"DUNNING_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}

    def dunning(*args: str, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DUNNING, *args], capture_output=True, text=True, env={**env, **more}, timeout=60)

    made = dunning("log", "keygen", "--name", "billing.example.com/dunning")
    private, public = made.stdout.split()
    (tmp_path / "key.pub").write_text(public + "\n")
    assert dunning("log", "checkpoint").returncode == 1  # none yet, said so
    assert dunning("log", "checkpoint", "--make").returncode == 2  # no key set
    checkpoint = dunning("log", "checkpoint", "--make", DUNNING_CHECKPOINT_KEY=private)
    assert checkpoint.returncode == 0 and checkpoint.stdout.startswith("billing.example.com/dunning\n0\n")
    (tmp_path / "checkpoint.txt").write_text(checkpoint.stdout)
    pay(log, "ACME-1", "INV-1")
    verify = ("log", "verify", "--checkpoint", str(tmp_path / "checkpoint.txt"), "--public-key",
              str(tmp_path / "key.pub"))
    ok = dunning(*verify)
    assert ok.returncode == 0 and "intact: 1 events in 64 chains" in ok.stdout and "extends the checkpoint" in ok.stdout
    assert dunning(*verify, "--account", "ACME-1").returncode == 0
    (tmp_path / "other.pub").write_text(keygen("billing.example.com/dunning")[1])
    wrong = dunning("log", "verify", "--checkpoint", str(tmp_path / "checkpoint.txt"), "--public-key",
                    str(tmp_path / "other.pub"))
    assert wrong.returncode == 1 and "no signature by" in wrong.stderr and "Traceback" not in wrong.stderr
    assert dunning("log", "verify", "--checkpoint", str(tmp_path / "checkpoint.txt")).returncode == 2
    log.engine.dispose()
