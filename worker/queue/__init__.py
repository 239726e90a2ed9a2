"""The Redis side: dramatiq's broker and bulk enqueue (`broker.py`), the typed queue message
(`envelope.py`), the agenda of deferred jobs (`agenda.py`), the worker's background loops
(`dispatcher.py`) and providers' rate limits (`throttle.py`)."""
