"""Masking personal data for logs, error messages and exports.

Enough stays visible to tell two records apart and to recognise one's own data
(`+86138****8000`, `z***@example.com`); not enough to contact the person.
"""

from __future__ import annotations

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
    """Mask `value` if `field` names personal data; otherwise return it unchanged."""
    if field == "phone" or field == "address" and value.startswith("+"):
        return mask_phone(value)
    if field == "email" or field == "address" and "@" in value:
        return mask_email(value)
    if field in PERSONAL_FIELDS:
        return mask_text(value)
    return value
