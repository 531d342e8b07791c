"""``python -m storyreel.cli``: the same as the ``storyreel`` command."""

from . import main

main()
