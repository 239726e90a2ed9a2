"""Webhooks to the billing system (Standard Webhooks): what happened to its reminders,
signed so it can trust them. `signing.py` signs; the outbox, the dispatcher and the
events that feed them are issue 12's next step."""
