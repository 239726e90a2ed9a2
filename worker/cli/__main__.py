"""`python -m worker.cli`: the same as the `dunning` command."""

from worker.cli import main

main()
