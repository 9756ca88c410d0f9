"""Plots drawn only from results files, so they can be redrawn without retraining.

One module per kind of result: :mod:`.steps` (the metric against adaptation steps),
:mod:`.regression`, :mod:`.classification` and :mod:`.rl`, on the shared helpers of
:mod:`.common`. ``python -m metagym.plots DIR`` redraws every plot of an experiment folder,
whatever its domain (:func:`redraw`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from metagym.plots import classification, regression, rl
from metagym.results import read_results

__all__ = ["redraw"]

# replaced by the domain registry (metagym.domains)
_REDRAW: dict[str, Callable[[str | Path], list[Path]]] = {
    "sinusoid": regression.redraw,
    "omniglot": classification.redraw,
    "rl": rl.redraw,
}


def redraw(out_dir: str | Path) -> list[Path]:
    """Redraw every plot of an experiment folder from its results files, by the domain of its
    rows (an unknown domain or no rows: the regression plots)."""
    out_dir = Path(out_dir)
    rows = read_results(out_dir / "results.json")["rows"]
    domain = rows[0]["domain"] if rows else ""
    return _REDRAW.get(domain, regression.redraw)(out_dir)
