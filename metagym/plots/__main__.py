"""``python -m metagym.plots DIR``: redraw every plot of an experiment folder (prints the paths)."""

from __future__ import annotations

import argparse

from metagym.plots import redraw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m metagym.plots",
        description="Redraw every plot of an experiment folder from its results files.",
    )
    parser.add_argument("out_dir", help="an experiment folder holding results.json")
    for path in redraw(parser.parse_args(argv).out_dir):
        print(path)


if __name__ == "__main__":
    main()
