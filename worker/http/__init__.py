"""What `dunning serve` answers: Twilio's callbacks and replies (`twilio.py`), one-click
unsubscribes (`unsubscribe.py`), composed in `app.py`."""
