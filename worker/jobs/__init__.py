"""How work comes in: the job contract (`contract.py`), reading and validating what billing
sends (`parse.py`), intake — accept once, dead-letter the bad, queue the good (`intake.py`)
— and the bundled samples (`samples/`)."""
