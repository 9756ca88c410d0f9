"""The rl experiment: ``python experiments/rl.py [flags]`` = ``metagym run rl [flags]``
(``--help`` lists them; docs/running.md explains them)."""

import sys

from metagym.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "rl", *sys.argv[1:]]))
