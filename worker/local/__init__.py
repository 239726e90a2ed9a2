"""Stand-ins for Redis, SMTP and Twilio on one machine (`stack.py` and the servers beside it),
and `dunning demo` and `dunning simulate`, built on them. Production code never imports
this package (an import-linter contract): only `worker.cli.local` and the tests do."""
