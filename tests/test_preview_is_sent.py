"""`dunning templates preview` shows exactly what the worker sends: the same composition
path (one opt-out rule, by `debtor.kind`), so text, opt-out line and SMS segments
agree — checked against what reached the Twilio sandbox and the SMTP server from a
real worker, for a person on the `default` profile (the case that once differed)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from harness import WEDNESDAY_10, Harness
from test_cli import dunning

from channels.segments import count_segments


def _preview(harness: Harness, job: dict[str, object], channel: str, tmp_path: Path) -> str:
    source = tmp_path / f"{channel}.json"
    source.write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
    env = {**harness.stack.env(), **harness.worker_env}
    result = dunning("templates", "preview", "due_day", "--job", str(source), "--channel", channel,
                     "--now", WEDNESDAY_10.isoformat(), env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_persons_sms_and_email_are_what_preview_showed(harness: Harness, tmp_path: Path) -> None:
    sms_job = harness.job(debtor__kind="person", debtor__preferred_channel="sms", debtor__email=None)
    sms_job["debtor"].pop("email")  # type: ignore[union-attr]
    email_job = harness.job(debtor__kind="person", debtor__preferred_channel="email")
    harness.run(sms_job, email_job)

    preview = _preview(harness, sms_job, "sms", tmp_path)
    [sent] = harness.texts_to(sms_job["debtor"]["phone"], sms_job["invoice"]["number"])  # type: ignore[index]
    body = preview.split("\n\n", 1)[1].rstrip("\n")
    assert body == sent["body"], "the preview is the text sent"
    assert "回复TD退订" in sent["body"], "a person gets the opt-out line"
    segments = count_segments(sent["body"])
    assert f"segments: {segments.parts} ({segments.encoding}, {segments.units} units)" in preview

    preview = _preview(harness, email_job, "email", tmp_path)
    [mail] = harness.emails_to(email_job["debtor"]["email"])  # type: ignore[index]
    text_part = next(part for part in mail.walk() if part.get_content_type() == "text/plain")
    sent_text = base64.b64decode(text_part.get_payload()).decode("utf-8").replace("\r\n", "\n")
    previewed = preview.split("\n\n", 1)[1].split("\n--- HTML")[0].strip("\n")
    assert previewed == sent_text, "the preview is the email sent, its unsubscribe link included"
