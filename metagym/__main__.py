"""``python -m metagym``: the ``metagym`` command (see :mod:`metagym.cli`)."""

import sys

from metagym.cli import main

sys.exit(main())
