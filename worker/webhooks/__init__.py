"""Webhooks to the billing system (Standard Webhooks): what happened to its reminders,
signed so it can trust them. `payload.py` builds the body, `signing.py` signs it,
`dispatcher.py` posts what the contact log's outbox holds (`worker/contact_log/webhooks.py`)."""
