"""Channel adapters, one module per channel behind one protocol (email, SMS, voice).

Empty until sending is built (issue 3); `schedules/` and `worker/` do not import it yet.
"""
