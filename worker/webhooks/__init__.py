"""Webhooks to the billing system (Standard Webhooks): what happened to its reminders,
signed so it can trust them. `payload.py` builds the body, `signing.py` signs it,
`outbox.py` keeps what is still to be told (a cursor per endpoint over the log, and the
outbox's rows), `dispatcher.py` posts it."""
