"""Children that a test interrupts (SIGINT, as Ctrl-C in a terminal) must be able to get it."""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """``preexec_fn`` of such a child: SIGINT's default action, whatever this process inherited.

    A shell starts background jobs with SIGINT ignored (``cmd &``, ``nohup``), and an ignored
    signal stays ignored across ``exec``: a Python started so installs no ``KeyboardInterrupt``
    handler, and the test would see a lookup that Ctrl-C cannot reach.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
