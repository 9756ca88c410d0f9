"""Plots drawn only from results files, so they can be redrawn without retraining.

One module per kind of result: :mod:`.steps` (the metric against adaptation steps),
:mod:`.regression`, :mod:`.classification` and :mod:`.rl`, on the shared helpers of
:mod:`.common`. ``metagym plot DIR`` (or ``python -m metagym.plots DIR``) redraws every plot of
a run folder with its domain's ``redraw`` (:func:`redraw`).
"""

from __future__ import annotations

from pathlib import Path

from metagym.results import read_results

__all__ = ["redraw"]


def redraw(out_dir: str | Path) -> list[Path]:
    """Redraw every plot of a run folder from its files, with the ``redraw`` of the domain that
    wrote it (the config's ``domain``, else the rows'; unknown: the regression plots)."""
    from metagym import domains  # the domains import the plot modules

    out_dir = Path(out_dir)
    if not (out_dir / "results.json").is_file():
        raise FileNotFoundError(f"no results.json in {out_dir}: give a run folder (--out of a run)")
    results = read_results(out_dir / "results.json")
    if not results["rows"]:
        raise ValueError(f"{out_dir / 'results.json'} has no rows: nothing to draw")
    registered = domains.names()
    candidates = [results.get("config", {}).get("domain")]
    candidates += [row.get("domain") for row in results["rows"][:1]]
    name = next((c for c in candidates if c in registered), "regression")
    return domains.get(name).redraw(out_dir)
