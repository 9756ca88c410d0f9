"""The compute-matched comparison: each family's training query loss at equal meta-training
time. It is no claim of the lecture's table and enters no claim's verdict."""

from __future__ import annotations

from typing import Any

from metagym.report.comparisons import Evidence, comparison, domain_of, representative, seed_key
from metagym.report.verdicts import CLAIM_RULE, FAMILIES, claim_record
from metagym.stats import Estimate


def loss_at(curve: dict[str, Any], seconds: float) -> float | None:
    """The loss of the last logged point at or before ``seconds`` of meta-training (None: none)."""
    last = None
    for t, loss in zip(curve["seconds"], curve["loss"], strict=True):
        if t > seconds * (1 + 1e-9):
            break
        last = loss
    return last


def what_of(other: str, family: str, g: str) -> str:
    return f"query loss at equal training time: {other} ({family}) - {g} (gradient)"


def _joined(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


COMPUTE_STATEMENT = (
    "At equal meta-training time, the gradient-based representative reaches a lower query loss "
    "on its training meta-batches than the black-box (and non-parametric) representative"
)


def compute_matched(ev: Evidence) -> dict[str, Any]:
    """Training query loss of each family's representative at equal meta-training time: per
    primary run and seed, T = the shorter of the two trainings (cumulative seconds from
    ``metrics.csv``), each learner's loss at its last logged point at or before T; with several
    seeds the interval is across seeds (paired seed by seed: seeds where only one of the two
    logged a curve are left out, with a note), with one there is none."""
    comparisons, pairs, skipped = [], [], []
    for group in ev.groups():
        rows = ev.of(group)
        domain = domain_of(rows)
        curves: dict[str, list[dict]] = {}
        for curve in (t for t in ev.training if t["group"] == group):
            curves.setdefault(curve["learner"], []).append(curve)
        usable = {
            n: sorted(c, key=lambda t: t["seed"])
            for n, c in curves.items()
            if all(t["loss_column"] and t["loss"] for t in c)
        }
        skipped += [
            {"group": group, "learner": n, "family": c[0]["family"]}
            for n, c in curves.items()
            if n not in usable and c[0]["family"] in FAMILIES
        ]
        mine = [r for r in rows if r["learner"] in usable]
        g = representative(mine, "gradient")
        if g is None:
            continue
        for family in ("black-box", "non-parametric"):
            other = representative(mine, family)
            if other is None:
                continue
            by_seed = [{t["seed"]: t for t in usable[n]} for n in (g, other)]
            shared = sorted(set(by_seed[0]) & set(by_seed[1]))
            seeds = [(by_seed[0][s], by_seed[1][s]) for s in shared]
            lone = sorted(set(by_seed[0]) ^ set(by_seed[1]))
            seed_note = f"seeds {lone} left out: a curve of one learner only" if lone else ""
            if not seeds:
                comparisons.append(comparison(domain, group, what_of(other, family, g),
                                              note=seed_note))  # fmt: skip
                continue
            times = [min(a["seconds"][-1], b["seconds"][-1]) for a, b in seeds]
            losses = [
                (loss_at(a, t), loss_at(b, t)) for (a, b), t in zip(seeds, times, strict=True)
            ]
            what = what_of(other, family, g)
            pair = {
                "domain": domain,
                "group": group,
                "gradient": g,
                "other": other,
                "family": family,
                "seeds": shared,
                "seconds": times,
                "loss_gradient": [x for x, _ in losses],
                "loss_other": [y for _, y in losses],
                "loss_columns": [usable[g][0]["loss_column"], usable[other][0]["loss_column"]],
            }
            pairs.append(pair)
            if any(x is None or y is None for x, y in losses):
                comparisons.append(
                    comparison(
                        domain,
                        group,
                        what,
                        note=_joined("no logged point by the shorter time", seed_note),
                    )
                )
                continue
            key = seed_key(group)
            if len(losses) == 1:
                a, b = Estimate.constant(-losses[0][0]), Estimate.constant(-losses[0][1])
                comparisons.append(
                    comparison(
                        domain,
                        group,
                        what,
                        a,
                        b,
                        interval=False,
                        note=_joined("one seed: no interval", seed_note),
                    )
                )
                continue
            a = Estimate.of_units([-x for x, _ in losses], key, seed_level=True)
            b = Estimate.of_units([-y for _, y in losses], key, seed_level=True)
            comparisons.append(comparison(domain, group, what, a, b, note=seed_note))
    return claim_record(
        None,
        "Compute-matched: training query loss at equal meta-training time",
        "per primary run, each family is represented by its best learner on test among those "
        "that log a query loss on their training meta-batches (losses/query_after_adaptation "
        "for the MAML family, losses/query for the others); T = the shorter of the two "
        "meta-trainings (cumulative seconds from metrics.csv's iterations per second), each "
        "learner's loss is that of its last logged point at or before T, and d = loss of the "
        "black-box (or non-parametric) representative - loss of the gradient one (d > 0: the "
        "gradient learner is lower). With several seeds the interval is the Student-t interval "
        "across seeds of the per-seed differences; with one seed the difference is shown with "
        "no interval and no verdict. It is no claim of the lecture's table: it enters no "
        "claim's verdict. " + CLAIM_RULE.replace("The claim", "The statement"),
        comparisons,
        statement=COMPUTE_STATEMENT,
        pairs=pairs,
        skipped=skipped,
    )
