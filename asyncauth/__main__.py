"""``python -m asyncauth`` is the ``asyncauth`` command."""

import sys

from .cli import main

sys.exit(main())
