"""Operator templates → a whole message: sandboxed rendering (`render.py`), what a template
is given and the one opt-out rule (`context.py`), `templates check` (`checks.py`), signed
unsubscribe links (`unsubscribe.py`)."""
