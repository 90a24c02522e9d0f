"""``python -m clawstate.cli``: the ``clawstate`` command without the console script."""

from clawstate.cli import main

main()
