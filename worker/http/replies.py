"""What an inbound SMS asks for: opt-out, opt-in, help, or words for a person to read.

Keywords per COMPLIANCE.md S-OPTOUT (the CTIA/TCPA list, and 退订/TD/停止 for Chinese
senders), matched on the whole message, case-insensitively, trimmed, punctuation
stripped: "Stop." and " stop!" opt out; "please stop calling me" is a message for a
person (who may well record an opt-out for it).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

Intent = Literal["optout", "optin", "help", "other"]

OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT", "OPT OUT",
                     "退订", "TD", "停止"})
OPT_IN = frozenset({"START", "YES", "UNSTOP", "开始", "订阅"})
HELP = frozenset({"HELP", "INFO", "帮助"})


def normalized(body: str) -> str:
    """Upper case, punctuation and symbols dropped, runs of space made one."""
    kept = "".join(c for c in unicodedata.normalize("NFKC", body) if unicodedata.category(c)[0] not in "PS")
    return re.sub(r"\s+", " ", kept).strip().upper()


def intent(body: str) -> Intent:
    word = normalized(body)
    if word in OPT_OUT:
        return "optout"
    if word in OPT_IN:
        return "optin"
    if word in HELP:
        return "help"
    return "other"


def chinese(body: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in body) or normalized(body) == "TD"
