"""``python -m metagym.plots DIR``: the same as ``metagym plot DIR``."""

import sys

from metagym.cli import main

sys.exit(main(["plot", *sys.argv[1:]]))
