"""What a template is given, and the one opt-out rule: the whole message a debtor gets
for a stage on a channel (`compose`), shared by the worker, `dunning templates preview`
and `templates check`, so a preview is exactly what is sent."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from worker.messages.render import Rendered, Renderer
from worker.settings import Sender

OPT_OUT = {
    "zh": {"sms": "回复TD退订", "email": "如不希望再收到此类邮件，请点击退订：{url}"},
    "en": {"sms": "Reply STOP to opt out.", "email": "To stop these emails, unsubscribe here: {url}"},
}


def opt_out_line(locale: str, channel: str, unsubscribe_url: str | None = None) -> str | None:
    """The opt-out sentence for a channel in a locale (English where the language has none)."""
    if channel == "voice":
        return None
    lines = OPT_OUT.get(locale.split("-")[0], OPT_OUT["en"])
    return lines[channel].format(url=unsubscribe_url or "")


def needs_opt_out(debtor: Any) -> bool:
    """The one opt-out rule (Reg F 1006.6(e)): a message to a person carries the way to
    stop it; one to a business does not need to."""
    return bool(debtor.kind == "person")


def compose(renderer: Renderer, job: Any, stage: str, channel: str, today: date, sender: Sender,
            unsubscribe_url: str | None, balance: Decimal | None = None, locale: str | None = None) -> Rendered:
    """The whole message a debtor gets for a stage on a channel: the one path the worker,
    `templates preview` and the console share, so a preview is exactly what is sent
    (opt-out line and SMS segments included). `balance`: what is still owed, when a
    part was paid; `locale` overrides the debtor's (a preview in another language)."""
    wanted = locale or job.debtor.locale
    opt_out = opt_out_line(wanted, channel, unsubscribe_url) if needs_opt_out(job.debtor) else None
    invoice = job.invoice if balance in (None, job.invoice.amount_due) else job.invoice.model_copy(
        update={"amount_due": balance})
    return renderer.render(stage, channel, wanted, message_context(invoice, job.debtor, stage, today, sender, opt_out))


def message_context(invoice: Any, debtor: Any, stage: str, today: date, sender: Sender,
                    opt_out: str | None = None) -> dict[str, Any]:
    """What a template may use. Plain values (dicts, Decimal, date), not application objects."""
    dpd = (today - invoice.due_date).days
    return {"invoice": invoice.model_dump(), "debtor": debtor.model_dump(), "stage": stage, "dpd": dpd,
            "days_overdue": max(dpd, 0), "days_left": max(-dpd, 0), "today": today,
            "sender": sender.for_locale(debtor.locale), "opt_out": opt_out}
