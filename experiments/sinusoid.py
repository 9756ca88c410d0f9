"""The sinusoid experiment: ``python experiments/sinusoid.py [flags]`` = ``metagym run sinusoid [flags]``
(``--help`` lists them; docs/running.md explains them)."""

import sys

from metagym.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "sinusoid", *sys.argv[1:]]))
