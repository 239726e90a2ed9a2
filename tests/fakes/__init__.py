"""Test doubles beside the stand-ins they extend: scripted SMTP replies, scripted Twilio
failures and outcomes. Production code never sees them."""
