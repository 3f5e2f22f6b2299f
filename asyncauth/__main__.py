"""``python -m asyncauth`` is the ``asyncauth`` command."""

import sys

from ._cli import main

sys.exit(main())
