"""Configuration from the environment, read once at the edge (CLI, worker start-up).

Secrets (SMTP password, Twilio auth token, the signing key) are read here and nowhere
else, and never printed: they are excluded from `repr`.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from worker.errors import ConfigError

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "templates"  # the templates dunning ships
WEBHOOK_SECRET_PREFIX = "whsec_"


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


@dataclass(frozen=True)
class Settings:
    template_dir: Path = SHIPPED_DIR
    profile_dir: Path | None = None
    default_locale: str = "en-US"
    sender: Sender = field(default_factory=Sender)
    database_url: str = "sqlite:///var/dunning.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    clock: str = "system"
    smtp_url: str | None = None
    smtp_from: str = "billing@example.com"
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_timeout_s: float = 30.0  # for each SMTP reply; past it after the data, the outcome is unknown
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = field(default=None, repr=False)
    twilio_from: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_base_url: str = "https://api.twilio.com"
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str | None = field(default=None, repr=False)  # required by `serve` and `worker`
    sms_per_second: float | None = None  # segments/s per sender; default by number: long code 1, short code 100
    calls_per_second: float = 1.0  # per Twilio account
    email_per_second: float | None = None  # per SMTP relay; unlimited unless set
    escalation_email: str | None = None  # the supervisor who takes over an escalated case
    webhook_url: str | None = field(default=None, repr=False)  # the billing system's endpoint (may hold a token)
    webhook_secret: bytes | None = field(default=None, repr=False)  # from DUNNING_WEBHOOK_SECRET (whsec_...)
    master_key: bytes | None = field(default=None, repr=False)  # DUNNING_MASTER_KEY: wraps the accounts' keys
    retention_years: int = 6  # the house's: business debts' records kept this long after the last activity
    template_approvals: int = 2  # people a template version needs to go live: its author, and another (four eyes)
    claim_lease: timedelta = timedelta(minutes=5)  # a claimed email without outcome is resent after this
    health_file: Path = Path("var/dunning-worker.health")  # written by `dunning worker`, read by --check
    stranded_after_s: float = 30 * 60  # a message in an ack set this long was lost by its fetch
    shutdown_s: float = 45.0  # DUNNING_SHUTDOWN_S: at SIGTERM, messages in hand get this long to finish
    broker_heartbeat_ms: int = 60_000
    broker_maintenance_chance: int = 1_000
    log_chains: int = 64  # DUNNING_LOG_CHAINS: K, the contact log's chains, fixed when the log is created
    checkpoint_key: str | None = field(default=None, repr=False)  # DUNNING_CHECKPOINT_KEY: signs checkpoints
    checkpoint_dir: Path | None = None  # DUNNING_CHECKPOINT_DIR: each checkpoint also written here
    checkpoint_every_s: float = 10.0  # while events come in, the worker makes a checkpoint this often
    metrics_host: str = "127.0.0.1"  # DUNNING_METRICS_HOST: where /metrics and the probes listen (0.0.0.0 in a pod)
    metrics_port: int = 9464  # DUNNING_METRICS_PORT: `dunning worker`'s, one per host; 0: none
    serve_metrics_port: int = 9465  # DUNNING_SERVE_METRICS_PORT: `dunning serve`'s, apart from the API's; 0: none

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        def get(name: str) -> str | None:
            value = environ.get(name, "").strip()
            return value or None

        defaults = Sender()
        sender = Sender(
            name=get("DUNNING_SENDER_NAME") or defaults.name,
            phone=get("DUNNING_SENDER_PHONE") or defaults.phone,
            email=get("DUNNING_SENDER_EMAIL") or defaults.email,
            payment_instructions=get("DUNNING_PAYMENT_INSTRUCTIONS") or defaults.payment_instructions,
            localized={} if get("DUNNING_SENDER_NAME") else defaults.localized,
        )
        template_dir = get("DUNNING_TEMPLATE_DIR")
        profile_dir = get("DUNNING_PROFILE_DIR")
        return cls(
            template_dir=Path(template_dir) if template_dir else SHIPPED_DIR,
            profile_dir=Path(profile_dir) if profile_dir else None,
            default_locale=get("DUNNING_DEFAULT_LOCALE") or cls.default_locale,
            sender=sender,
            database_url=get("DUNNING_DATABASE_URL") or cls.database_url,
            redis_url=get("DUNNING_REDIS_URL") or cls.redis_url,
            clock=get("DUNNING_CLOCK") or cls.clock,
            smtp_url=get("DUNNING_SMTP_URL"),
            smtp_from=get("DUNNING_SMTP_FROM") or sender.email,
            smtp_username=get("DUNNING_SMTP_USERNAME"),
            smtp_password=get("DUNNING_SMTP_PASSWORD"),
            smtp_timeout_s=_rate(get("DUNNING_SMTP_TIMEOUT_S"), "DUNNING_SMTP_TIMEOUT_S") or cls.smtp_timeout_s,
            twilio_account_sid=get("DUNNING_TWILIO_ACCOUNT_SID") or get("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=get("DUNNING_TWILIO_AUTH_TOKEN") or get("TWILIO_AUTH_TOKEN"),
            twilio_from=get("DUNNING_TWILIO_FROM"),
            twilio_messaging_service_sid=get("DUNNING_TWILIO_MESSAGING_SERVICE_SID"),
            twilio_base_url=get("DUNNING_TWILIO_BASE_URL") or cls.twilio_base_url,
            public_url=(get("DUNNING_PUBLIC_URL") or cls.public_url).rstrip("/"),
            secret_key=get("DUNNING_SECRET_KEY"),
            sms_per_second=_rate(get("DUNNING_SMS_PER_SECOND"), "DUNNING_SMS_PER_SECOND"),
            calls_per_second=_rate(get("DUNNING_CALLS_PER_SECOND"), "DUNNING_CALLS_PER_SECOND") or cls.calls_per_second,
            email_per_second=_rate(get("DUNNING_EMAIL_PER_SECOND"), "DUNNING_EMAIL_PER_SECOND"),
            escalation_email=get("DUNNING_ESCALATION_EMAIL"),
            webhook_url=_webhook_url(get("DUNNING_WEBHOOK_URL"), get("DUNNING_WEBHOOK_SECRET")),
            webhook_secret=_webhook_secret(get("DUNNING_WEBHOOK_SECRET"), get("DUNNING_WEBHOOK_URL")),
            master_key=_master_key(get("DUNNING_MASTER_KEY")),
            retention_years=_whole(get("DUNNING_RETENTION_YEARS"), "DUNNING_RETENTION_YEARS") or cls.retention_years,
            template_approvals=_approvals(get("DUNNING_TEMPLATE_APPROVALS")),
            claim_lease=timedelta(seconds=_rate(get("DUNNING_CLAIM_LEASE_S"), "DUNNING_CLAIM_LEASE_S")
                                  or cls.claim_lease.total_seconds()),
            health_file=Path(get("DUNNING_HEALTH_FILE") or cls.health_file),
            stranded_after_s=_rate(get("DUNNING_STRANDED_AFTER_S"), "DUNNING_STRANDED_AFTER_S") or cls.stranded_after_s,
            shutdown_s=_rate(get("DUNNING_SHUTDOWN_S"), "DUNNING_SHUTDOWN_S") or cls.shutdown_s,
            broker_heartbeat_ms=_whole(get("DUNNING_BROKER_HEARTBEAT_MS"), "DUNNING_BROKER_HEARTBEAT_MS")
            or cls.broker_heartbeat_ms,
            broker_maintenance_chance=_whole(get("DUNNING_BROKER_MAINTENANCE_CHANCE"),
                                             "DUNNING_BROKER_MAINTENANCE_CHANCE") or cls.broker_maintenance_chance,
            log_chains=_chains(get("DUNNING_LOG_CHAINS")),
            checkpoint_key=get("DUNNING_CHECKPOINT_KEY"),
            checkpoint_dir=Path(checkpoint_dir) if (checkpoint_dir := get("DUNNING_CHECKPOINT_DIR")) else None,
            checkpoint_every_s=_rate(get("DUNNING_CHECKPOINT_EVERY_S"), "DUNNING_CHECKPOINT_EVERY_S")
            or cls.checkpoint_every_s,
            metrics_host=get("DUNNING_METRICS_HOST") or cls.metrics_host,
            metrics_port=_port(get("DUNNING_METRICS_PORT"), "DUNNING_METRICS_PORT", cls.metrics_port),
            serve_metrics_port=_port(get("DUNNING_SERVE_METRICS_PORT"), "DUNNING_SERVE_METRICS_PORT",
                                     cls.serve_metrics_port),
        )


MIN_SECRET_CHARS = 32


def require_secrets(settings: Settings) -> list[str]:
    """Refuse to run a long-lived process (`serve`, `worker`) on published or missing
    secrets: the signing key makes unsubscribe links unforgeable, so a default one would
    let anyone unsubscribe anyone. Returns warnings that do not stop it: a public URL
    that is not https (the links in every email are built on it)."""
    key = settings.secret_key
    if not key:
        raise ConfigError("DUNNING_SECRET_KEY is not set: it signs unsubscribe links, and without it anyone could "
                          "unsubscribe anyone. Set it to a random value of at least "
                          f"{MIN_SECRET_CHARS} characters, e.g. `python3 -c 'import secrets; "
                          "print(secrets.token_urlsafe(32))'`, the same for every worker and server.")
    if len(key) < MIN_SECRET_CHARS:
        raise ConfigError(f"DUNNING_SECRET_KEY has {len(key)} characters; at least {MIN_SECRET_CHARS} are needed "
                          "(a random value, e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    if settings.master_key is None:
        raise ConfigError("DUNNING_MASTER_KEY is not set: personal data (addresses, names, the jobs' JSON) is "
                          "sealed at rest under it. Set it to 32 random bytes in base64, e.g. `python3 -c 'import "
                          "base64, os; print(base64.b64encode(os.urandom(32)).decode())'`, the same for every worker "
                          "and server, and keep it apart from the database's backups.")
    warnings = []
    if not settings.public_url.startswith("https://"):
        warnings.append(f"DUNNING_PUBLIC_URL is {settings.public_url}: unsubscribe links and Twilio callbacks "
                        "should be https; emails go without List-Unsubscribe-Post, as RFC 8058 allows one-click "
                        "unsubscribe only over https (the link and the mailto: address still work)")
    return warnings


def parse_webhook_secret(text: str) -> bytes:
    """`whsec_<base64>` (Standard Webhooks) → the key; ValueError saying what is expected."""
    if not text.startswith(WEBHOOK_SECRET_PREFIX):
        example = WEBHOOK_SECRET_PREFIX + base64.b64encode(b"\0" * 24).decode()
        raise ValueError(f"expected {WEBHOOK_SECRET_PREFIX}<base64>, e.g. {example}")
    try:
        key = base64.b64decode(text[len(WEBHOOK_SECRET_PREFIX):] + "==", validate=False)
    except (binascii.Error, ValueError):
        raise ValueError(f"the part after {WEBHOOK_SECRET_PREFIX} is not base64") from None
    if len(key) < 16:
        raise ValueError(f"the key is {len(key)} bytes; at least 16 random bytes are expected")
    return key


def parse_master_key(text: str) -> bytes:
    """`DUNNING_MASTER_KEY` → 32 bytes; ValueError saying what is expected."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64; expected 32 random bytes in base64, e.g. "
                         "`python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'`") from None
    if len(key) != 32:
        raise ValueError(f"{len(key)} bytes; 32 random bytes in base64 expected")
    return key


def _approvals(value: str | None) -> int:
    if value is None:
        return 2
    if value not in ("1", "2"):
        raise ConfigError(f"DUNNING_TEMPLATE_APPROVALS: {value!r}; 1 (the author publishes alone) or 2 (another "
                          "person approves) expected")
    return int(value)


def _whole(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or int(value) <= 0:
        raise ConfigError(f"{name}: {value!r} is not a positive whole number")
    return int(value)


def _port(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) > 65535:
        raise ConfigError(f"{name}: {value!r} is not a TCP port (0 to 65535; 0: do not listen)")
    return int(value)


def _rate(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        rate = float(value)
    except ValueError:
        rate = 0.0
    if not rate > 0:
        raise ConfigError(f"{name}: {value!r} is not a positive number")
    return rate


def _chains(value: str | None) -> int:
    """K for a new contact log: 1 to 4,096 chains (more buys nothing: writers wait on
    each other only when their accounts share a chain)."""
    if value is None:
        return Settings.log_chains
    if not value.isdigit() or not 1 <= int(value) <= 4096:
        raise ConfigError(f"DUNNING_LOG_CHAINS: {value!r}; a whole number of chains from 1 to 4096 expected")
    return int(value)


def _master_key(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        return parse_master_key(value)
    except ValueError as problem:
        raise ConfigError(f"DUNNING_MASTER_KEY: {problem}") from None


def _webhook_url(value: str | None, secret: str | None) -> str | None:
    """An http(s) URL with a host, given with its secret (a webhook nobody can verify is not sent)."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("DUNNING_WEBHOOK_URL: an http:// or https:// URL with a host is expected, "
                          "e.g. https://billing.example.com/hooks/dunning")
    if secret is None:
        raise ConfigError("DUNNING_WEBHOOK_URL is set but DUNNING_WEBHOOK_SECRET is not: webhooks are signed "
                          "(Standard Webhooks), so both are needed; the secret is whsec_ and the base64 of 24+ "
                          "random bytes")
    return value


def _webhook_secret(value: str | None, url: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        key = parse_webhook_secret(value)
    except ValueError as problem:
        raise ConfigError(f"DUNNING_WEBHOOK_SECRET: {problem}") from None
    if url is None:
        raise ConfigError("DUNNING_WEBHOOK_SECRET is set but DUNNING_WEBHOOK_URL is not: where should webhooks go?")
    return key
