"""Every metric dunning counts as it works, defined once (Prometheus, `prometheus-client`).

What is counted where it happens lives here: reminders, decisions, sends, the log's
appends and locks, webhook attempts, HTTP requests, sign-in failures, the supervisor's
restarts. What is a state, read when Prometheus asks — queue depth, the agenda, dead
letters, webhooks pending, the last verify and checkpoint, templates — is read then by
`worker.monitoring`, never kept up to date here.

Conventions (Prometheus' own): base units (seconds, not milliseconds), counters end in
`_total` (the client adds it to the names below), durations are histograms, and no label
takes an unbounded value — no account, invoice, address or template text. Labels come
from closed sets: outcomes, channels, providers, rule IDs from the profiles, a code's
family (`channels.base.ChannelError.code_class`), a route's template, the log's chain
number (fixed when the log is made).

In `dunning worker` every process writes its values to files in one folder
(the client's multiprocess mode, `PROMETHEUS_MULTIPROC_DIR`, set by the worker before
this module is imported) and the parent adds them up when scraped: one port per host
however many processes. `dunning serve`, one process, keeps them in memory.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Seconds: from a send's moment to minutes late (a queue backlog); a lock held from
# a fraction of a millisecond to seconds; an HTTP request.
_WAITING = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
_EXCHANGE = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_LOCKS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_LATE = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_REQUEST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REMINDERS = Counter("dunning_reminders", "Messages from the queue handled, by what became of them "
                    "(`Pipeline.run`'s outcome) and the channel last tried (none: no send was tried).",
                    ["outcome", "channel"])
DECISIONS = Counter("dunning_decisions", "Decisions taken by the worker, by action (send, defer, skip, escalate).",
                    ["action"])
DECISION_RULES = Counter("dunning_decision_rules", "The rules behind each decision, by action and rule ID: "
                         "how often W-LEGAL deferred a send, S-OPTOUT stopped one.", ["action", "rule"])
SENDS = Counter("dunning_sends", "Messages handed to a provider, by channel, provider and its answer "
                "(sent, transient, permanent, unknown, error).", ["channel", "provider", "result"])
PROVIDER_ERRORS = Counter("dunning_provider_errors", "Providers' refusals and failures, by channel, provider "
                          "and the code's family (4xx, 5xx, 2xxxx, connection, timeout...).",
                          ["channel", "provider", "code_class"])
DUE_TO_SENT = Histogram("dunning_reminder_due_to_sent_seconds", "From the moment a reminder was queued as due "
                        "(by intake, or by the agenda releasing it) to its provider accepting it.", ["channel"],
                        buckets=_WAITING)
CLAIM_TO_OUTCOME = Histogram("dunning_claim_to_outcome_seconds", "From a delivery's claim in the log to its "
                             "outcome recorded there (the provider's exchange and the write).", ["channel"],
                             buckets=_EXCHANGE)
AGENDA_LATENESS = Histogram("dunning_agenda_release_lateness_seconds", "How late the agenda's due entries "
                            "reached the queue, after the moment they were due.", buckets=_LATE)
WEBHOOK_ATTEMPTS = Counter("dunning_webhook_attempts", "Attempts to deliver a webhook, by endpoint host and "
                           "result (delivered, retry, failed, stopped).", ["endpoint", "result"])
LOG_APPENDS = Counter("dunning_log_appends", "Events appended to the contact log, by chain.", ["chain"])
LOCK_WAIT = Histogram("dunning_log_lock_wait_seconds", "A group commit's wait for the chains' locks it needs "
                      "(all at once, in order; on SQLite also the turn to write).", buckets=_LOCKS)
LOCK_HOLD = Histogram("dunning_log_lock_hold_seconds", "How long a group commit held its chains' locks, "
                      "through its commit.", buckets=_LOCKS)
HTTP_REQUESTS = Histogram("dunning_http_request_duration_seconds", "`dunning serve`'s requests, by route "
                          "template, method and status.", ["route", "method", "status"], buckets=_REQUEST)
SIGNIN_FAILURES = Counter("dunning_console_signin_failures", "Console sign-ins refused, by why: refused (a "
                          "wrong name or password, a disabled person) or throttled (too many tries).", ["why"])
LOOP_RESTARTS = Counter("dunning_loop_restarts", "The worker's own loops started again after their thread "
                        "died (a bug below the loop's step), by loop.", ["loop"])
LOOP_FAILURES = Counter("dunning_loop_failures", "Rounds of the worker's own loops that failed (an outage "
                        "waited out with backoff), by loop.", ["loop"])
