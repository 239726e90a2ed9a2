"""The Redis side: dramatiq's broker and bulk enqueue (`broker.py`), the typed queue message
(`envelope.py`), the agenda of deferred jobs (`agenda.py`), the recovery of stranded
messages (`stranded.py`) and providers' rate limits (`throttle.py`). It imports nothing
above it: the loops that run these in the worker's parent are `worker/loops.py`."""
