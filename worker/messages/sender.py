"""Who the messages come from (`Sender`), and where the shipped templates are: what the
settings need of the messages, without the renderer (Jinja, Babel) that `dunning
--help` need not load."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "templates"


@dataclass(frozen=True)
class Sender:
    """Who the messages come from; the demo's defaults, or settings from the environment."""

    name: str = "Example Trading Co., Ltd."
    phone: str = "+14155550123"
    email: str = "billing@example.com"
    payment_instructions: str = ("Pay online with the link in this message, or by bank transfer quoting the "
                                 "invoice number.")
    localized: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: {
        "zh": {"name": "示例贸易有限公司", "phone": "021-6123 4567",
               "payment_instructions": "可通过邮件中的链接在线付款，或银行转账并在备注中填写发票号。"}})

    def for_locale(self, locale: str) -> dict[str, str]:
        """Sender fields in a locale, falling back to the defaults above."""
        base = {"name": self.name, "phone": self.phone, "email": self.email,
                "payment_instructions": self.payment_instructions}
        language = locale.split("-")[0]
        return {**base, **self.localized.get(language, {}), **self.localized.get(locale, {})}
