"""Masking personal data for logs, error messages and exports.

Enough stays visible to tell two records apart and to recognise one's own data
(`+86138****8000`, `z***@example.com`); not enough to contact the person.
"""

from __future__ import annotations

import logging
import re

PERSONAL_FIELDS = frozenset({"email", "phone", "name", "company", "address"})


def mask_phone(phone: str) -> str:
    """Keep the country code and first digits, and the last four: '+86138****8000'."""
    if len(phone) <= 10:
        return phone
    return phone[:6] + "*" * (len(phone) - 10) + phone[-4:]


def mask_email(email: str) -> str:
    local, at, domain = email.rpartition("@")
    if not at:
        return mask_text(email)
    return f"{local[:1]}***@{domain}"


def mask_text(text: str) -> str:
    """Names and other free text: first character only."""
    return text[:1] + "*" * min(max(len(text) - 1, 0), 8)


def mask(field: str, value: str) -> str:
    """Mask `value` if `field` names personal data; otherwise return it unchanged. A
    placeholder the log gives for a value it cannot show (`[erased]`, `[sealed]`) is no
    personal data, and shown as it is."""
    if value.startswith("[") and value.endswith("]"):
        return value
    if field == "phone" or field == "address" and value.startswith("+"):
        return mask_phone(value)
    if field == "email" or field == "address" and "@" in value:
        return mask_email(value)
    if field in PERSONAL_FIELDS:
        return mask_text(value)
    return value


_FIELD_VALUE = re.compile(r"""(["'])(name|company|email|phone|to|from|recipient|address)\1:\s*(["'])(.*?)\3""")
_EMAIL = re.compile(r"[^\s'\"<>(),;:]+@[^\s'\"<>(),;:]+\.[^\s'\"<>(),;:]+")
_PHONE = re.compile(r"\+[1-9]\d{7,14}")


def mask_in_text(text: str) -> str:
    """Personal data inside free text (a log line that prints a job): the values of
    personal fields, then any email address or E.164 number left."""
    def field(found: re.Match[str]) -> str:
        quote, key, value_quote, value = found.groups()
        shown = mask("name" if key in ("name", "company") else "address", value)
        return f"{quote}{key}{quote}: {value_quote}{shown}{value_quote}"

    text = _FIELD_VALUE.sub(field, text)
    text = _EMAIL.sub(lambda m: mask_email(m.group()) if "***@" not in m.group() else m.group(), text)
    return _PHONE.sub(lambda m: mask_phone(m.group()), text)


class PersonalDataFilter(logging.Filter):
    """Masks personal data in every record a handler writes, its traceback included:
    libraries (dramatiq prints a failed message with its arguments) do not know what is
    personal, so the handler does it for them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_in_text(record.exc_text)
        record.msg, record.args = mask_in_text(message), None
        return True


def mask_logs(logger: logging.Logger | None = None) -> None:
    """Put `PersonalDataFilter` on every handler of `logger` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, PersonalDataFilter) for f in handler.filters):
            handler.addFilter(PersonalDataFilter())
