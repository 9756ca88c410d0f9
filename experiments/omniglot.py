"""The omniglot experiment: ``python experiments/omniglot.py [flags]`` = ``metagym run omniglot [flags]``
(``--help`` lists them; docs/running.md explains them)."""

import sys

from metagym.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "omniglot", *sys.argv[1:]]))
