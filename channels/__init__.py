"""Channel adapters, one module per channel behind one protocol (`channels.base.Channel`):
email over SMTP, SMS and voice over Twilio. `worker/` composes them; they import
neither `worker/` nor `schedules/`.
"""
