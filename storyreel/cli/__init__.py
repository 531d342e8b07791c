"""The ``storyreel`` command. Each command parses its arguments and makes one library call.

Exit codes: 0 ok; 1 the user's input or the machine's state is wrong (a message naming what, where and
why, no traceback); 2 a bug in storyreel; 130 interrupted.

One module per job, each command registering itself on :data:`app`:

* :mod:`.app`: the Typer app, its consoles, errors as messages and exit codes, :func:`main`;
* :mod:`.options`: the arguments several commands share;
* :mod:`.render`: ``render`` and ``enhance``, drawing their progress with :mod:`.progress`;
* :mod:`.review`: ``review``, the review page rebuilt from a render's manifest;
* :mod:`.keyframes`: ``keyframes``, only the start frames the keyframe stage draws;
* :mod:`.storyboard`: ``validate``, ``plan``, ``new``, ``templates``, ``schema``;
* :mod:`.enhancer`: ``enhancer serve``;
* :mod:`.cache`: ``cache ls``, ``cache du``, ``cache gc``.

Importing it loads typer and rich only: each command imports the library it calls when it runs.
"""

from __future__ import annotations

# Imported for the commands they register, in the order --help lists them.
from . import render, keyframes, review, storyboard, enhancer, cache  # noqa: F401  # isort: skip
from .app import app, main

__all__ = ["app", "main"]
