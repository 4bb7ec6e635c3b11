"""``python -m harness.cli``: the ``harness`` command (the tests and scripts start it this way)."""

from harness.cli import main

main()
