"""From evidence rows to oriented estimates and comparisons: the machinery the claims share.

A row of :class:`Evidence` becomes an :class:`~metagym.stats.Estimate` (:func:`value`) whose
sampling units are its tasks or seeds, so that differences of rows scored on the same units are
paired; :func:`comparison` turns two estimates into one row of a claim's numbers, with the
paired and the unpaired interval, their verdicts (:mod:`metagym.report.verdicts`) and, when
undecided, the tasks or seeds a paired test would need.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metagym.paired import orientation
from metagym.report.verdicts import CONTRADICTED, INCONCLUSIVE, SUPPORTED, decide
from metagym.stats import Estimate, ratio, seeds_needed, tasks_needed

#: The kinds of sampling unit of the report's estimates: the first entry of their keys.
TASKS, SEEDS, CHUNKS = "tasks", "seeds", "chunks"


def task_key(group: str, seed: Any, split: str, task_group: str | None, tasks: Sequence[int]):
    """The unit key of a row scored on ``tasks`` (indices into the split's evaluation stream) of
    run ``group`` and ``seed``: rows with the same key are on the same tasks, in the same order."""
    return (TASKS, group, repr(seed), split, task_group, len(tasks), hash(tuple(tasks)))


def seed_key(group: str) -> tuple:
    """The unit key of per-seed values of run ``group`` (the seeds in ``--seeds`` order)."""
    return (SEEDS, group)


def unit_keys(estimate: Estimate) -> dict[tuple, int]:
    """The report's sampling-unit keys of ``estimate`` (tasks, seeds, chunks of training) with
    their numbers of units; independent rows and constants have none."""
    return {
        k: n
        for k, n in estimate.n_units().items()
        if isinstance(k, tuple) and k and k[0] in (TASKS, SEEDS, CHUNKS)
    }


def half_width(estimate: Estimate) -> float | None:
    """The paired 95% half-width (None where infinite: one seed at the seed level)."""
    h = estimate.half_width()
    return h if math.isfinite(h) else None


def normalized(score: Estimate, trivial: Estimate, oracle: Estimate) -> Estimate | None:
    """``(score - trivial) / (oracle - trivial)``: the fraction of the gap between the trivial
    baseline and the oracle that a learner closes (1: the oracle, 0: the trivial baseline), by
    the delta method (:func:`metagym.stats.ratio`, terms of shared tasks pair); None when the gap
    is zero."""
    return ratio(score - trivial, oracle - trivial)


def reduction(before: Estimate, after: Estimate) -> Estimate | None:
    """``1 - after / before``: the fraction of an error removed (delta method); None when
    ``before`` is not positive."""
    if before.mean <= 0:
        return None
    r = ratio(after, before)
    return None if r is None else 1 - r


def effect_size(d: Estimate) -> float | None:
    """``d / (SE * sqrt(n))``, n the largest number of units: Cohen's d_z of a paired
    difference (mean over the standard deviation of the per-unit differences); None without
    units or spread."""
    units = unit_keys(d)
    variance = d.variance()
    if not units or variance <= 0:
        return None
    return d.mean / math.sqrt(variance * max(units.values()))


def per_seed_values(d: Estimate) -> np.ndarray | None:
    """The per-seed values of ``d`` (mean + the seed-level terms; seed i of every run is the same
    ``--seeds`` entry); None without seed-level units."""
    terms = [np.asarray(d.terms[k]) for k in unit_keys(d) if k[0] == SEEDS]
    if not terms or len({t.size for t in terms}) > 1:
        return None
    return d.mean + np.sum(terms, axis=0)


def _pairing(a: Estimate, b: Estimate) -> str:
    """How ``a - b`` was judged: ``"tasks"`` / ``"seeds"`` (paired on shared units), else why
    not."""
    ka, kb = unit_keys(a), unit_keys(b)
    shared = set(ka) & set(kb)
    if shared:
        return "+".join(sorted({k[0] for k in shared}))
    if not a.terms and not b.terms:
        return "independent: exact numbers"
    if (a.terms and not ka) or (b.terms and not kb):
        return "independent: no per-task scores"
    return "independent: different units"


# -- the evidence -----------------------------------------------------------------------------------
@dataclass
class Evidence:
    """What the claims are computed from.

    Attributes:
        rows: results rows (the common schema) with ``group`` (``experiment/variant``: rows of one
            group are scored on the same tasks; the row's own task group, Meta-World's env, is
            ``task_group``), ``primary`` (claims 1, 2, 5, 6 read primary groups), ``source``
            (``"main"``, or ``"sweep"`` for Omniglot's step sweep), ``report_steps`` (the
            learner's reported step count, None: the largest) and, where known, ``units`` (the
            per-task scores in task order, or the per-seed means), ``unit_key`` and
            ``seed_level`` (:func:`value` makes them an :class:`Estimate`).
        costs: per learner and group: ``domain, group, learner, family, iterations, meta_batch,
            train_s, per_update_s, per_update_ci95, growth_mb, peak_mb, memory_measure`` and,
            where known, ``per_update_units`` / ``per_update_key`` / ``per_update_seed_level``
            (seconds per meta-update of each logged chunk, or per seed).
        training: per learner, group and seed: ``domain, group, learner, family, seed`` (index),
            ``loss_column`` (None: no query loss logged), ``seconds`` (cumulative meta-training
            seconds at each logged point) and ``loss``.
        recipes: domain -> family -> registered learner names (the registry).
        sequence_models: domain -> black-box learner -> its sequence model (``"lstm"``,
            ``"gru"``, ``"transformer"``: the recipes' ``sequence_model``); a domain without an
            entry reads :data:`DEFAULT_SEQUENCE_MODELS`.
        shifts: domain -> shifted split -> (kind, level rank 1..n, mild to strong).
        references: domain -> ``{"trivial": ..., "oracle": ...}``, each ``{"learner", "steps"}``
            (a learner's row, ``steps`` ``"reported"`` or a count) or ``{"value"}`` (a constant
            such as chance accuracy), with a ``"label"``.
        domains: the domains the report covers (claim 4 lists every one of them).
        kinds: domain -> ``"classification"``, ``"regression"`` or ``"reinforcement learning"``.
        notes: what the report should say about the evidence (rows without per-task scores).
    """

    rows: list[dict[str, Any]]
    costs: list[dict[str, Any]] = field(default_factory=list)
    training: list[dict[str, Any]] = field(default_factory=list)
    recipes: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    sequence_models: dict[str, dict[str, str]] = field(default_factory=dict)
    shifts: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)
    references: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    domains: tuple[str, ...] = ("sinusoid", "omniglot", "rl")
    kinds: dict[str, str] = field(
        default_factory=lambda: {
            "sinusoid": "regression",
            "omniglot": "classification",
            "rl": "reinforcement learning",
        }
    )
    notes: list[str] = field(default_factory=list)

    def groups(self, primary_only: bool = True) -> list[str]:
        return list(
            dict.fromkeys(
                r["group"] for r in self.rows if r.get("primary", True) or not primary_only
            )
        )

    def of(self, group: str, source: str = "main") -> list[dict[str, Any]]:
        """The rows of ``group`` and ``source`` that the claims read (:func:`scored`)."""
        return scored(
            [r for r in self.rows if r["group"] == group and r.get("source", "main") == source]
        )


#: The metric the claims read where a run scores several (Meta-World: success rate and return),
#: in order of preference; a run with another single metric uses it.
SCORED_METRICS = ("success", "accuracy", "mse", "return")


def scored(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows over all tasks (``task_group`` None or ``"all"``: Meta-World's per-env rows are
    left out) of one metric: the first of :data:`SCORED_METRICS` present, else the first met."""
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    metric = next((m for m in SCORED_METRICS if m in metrics), metrics[0] if metrics else None)
    return [r for r in rows if r["metric"] == metric and r.get("task_group") in (None, "all")]


def sign(row: dict[str, Any]) -> int:
    """+1 where higher is better (accuracy, return, success), -1 for errors (mse)."""
    return orientation(row["metric"])


def row_identity(row: dict[str, Any]) -> tuple:
    """What identifies a row of the evidence (the key of its independent estimate)."""
    fields = ("group", "source", "learner", "split", "steps", "metric", "task_group")
    return ("row", *(repr(row.get(k)) for k in fields))


def value(row: dict[str, Any] | None) -> Estimate | None:
    """The row's mean with what its uncertainty is made of: its units (tasks or seeds) when
    known, else its interval as an independent estimate; None for a missing or diverged row."""
    if row is None or row.get("diverged") or row.get("mean") is None:
        return None
    if row.get("units"):
        within = {key: scores for key, scores in row.get("within") or ()}
        return Estimate.of_units(
            row["units"],
            tuple(row["unit_key"]),
            seed_level=bool(row.get("seed_level")),
            within=within,
        )
    # An old row's interval; none (or one task's 0) is no interval: infinite, never exact.
    ci95, n = row.get("ci95"), row.get("n_tasks")
    known = ci95 is not None and (n is None or n >= 2)
    return Estimate.independent(
        float(row["mean"]), float(ci95) if known else math.inf, key=row_identity(row)
    )


def learners_of(rows: Sequence[dict[str, Any]], family: str | None = None) -> list[str]:
    return list(
        dict.fromkeys(r["learner"] for r in rows if family is None or r.get("family") == family)
    )


def family_of(rows: Sequence[dict[str, Any]], learner: str) -> str | None:
    return next((r.get("family") for r in rows if r["learner"] == learner), None)


def row_at(
    rows: Sequence[dict[str, Any]], learner: str, split: str, steps: Any = "reported"
) -> dict[str, Any] | None:
    """The row of ``learner`` on ``split`` at ``steps`` (``"reported"``: the stepless row, else
    the learner's ``report_steps``, else its largest step count; ``"max"``: the largest)."""
    mine = [r for r in rows if r["learner"] == learner and r["split"] == split]
    if not mine:
        return None
    if steps in ("reported", "max"):
        stepless = [r for r in mine if r["steps"] is None]
        if stepless:
            return stepless[0]
        wanted = mine[0].get("report_steps") if steps == "reported" else None
        steps = wanted if wanted is not None else max(r["steps"] for r in mine)
    return next((r for r in mine if r["steps"] == steps), None)


def row_diverged(row: dict[str, Any] | None) -> bool:
    """Whether ``row`` exists and diverged (a missing row is unscored, not diverged)."""
    return row is not None and (bool(row.get("diverged")) or row.get("mean") is None)


def against(
    domain: str,
    group: str,
    what: str,
    values: dict[str, Estimate | None],
    failed: dict[str, bool],
) -> dict[str, Any]:
    """The comparison of the two learners of ``values`` (the first: a better score supports the
    claim) when at least one has no value; ``failed``: per learner, whether its row diverged.
    A diverged row counts against its learner when the other one was scored; an unscored row
    (missing), or both without a value, decides nothing."""
    first = next(iter(values))
    empty = [x for x, v in values.items() if v is None]
    if len(empty) == 1 and failed.get(empty[0]):
        return comparison(
            domain, group, what, note=f"{empty[0]} diverged",
            verdict=CONTRADICTED if empty[0] == first else SUPPORTED,
        )  # fmt: skip
    why = [f"{x} {'diverged' if failed.get(x) else 'unscored'}" for x in empty]
    return comparison(domain, group, what, note="; ".join(why))


def oriented(row: dict[str, Any] | None) -> Estimate | None:
    """The row's estimate with higher always better (errors negated)."""
    v = value(row)
    return None if v is None else sign(row) * v


def representative(rows: Sequence[dict[str, Any]], family: str, split: str = "test") -> str | None:
    """The family's learner with the best reported score on ``split`` (None: none ran or all
    diverged)."""
    best, best_value = None, -math.inf
    for learner in learners_of(rows, family):
        v = oriented(row_at(rows, learner, split))
        if v is not None and v.mean > best_value:
            best, best_value = learner, v.mean
    return best


def reference(
    ev: Evidence, rows: Sequence[dict[str, Any]], domain: str, which: str, split: str
) -> Estimate | None:
    """The trivial or oracle reference on ``split`` (None when not measured)."""
    spec = ev.references.get(domain, {}).get(which)
    if spec is None:
        return None
    if "value" in spec:
        return Estimate.constant(float(spec["value"]))
    return value(row_at(rows, spec["learner"], split, spec.get("steps", "reported")))


def normalized_row(
    ev: Evidence, rows: Sequence[dict[str, Any]], domain: str, learner: str, split: str
) -> Estimate | None:
    """The learner's reported score on ``split`` as a fraction of the trivial-to-oracle gap."""
    score = value(row_at(rows, learner, split))
    trivial = reference(ev, rows, domain, "trivial", split)
    oracle = reference(ev, rows, domain, "oracle", split)
    if score is None or trivial is None or oracle is None:
        return None
    return normalized(score, trivial, oracle)


#: A normalized score must exceed this (beyond its interval) to count as learned: accuracies of
#: float32 predictions at chance differ from 1 / ways by ~1e-9.
LEARNED_MARGIN = 1e-6


def learned(
    ev: Evidence,
    rows: Sequence[dict[str, Any]],
    domain: str,
    learner: str,
    *,
    unpaired: bool = False,
) -> bool:
    """True when the learner's normalized ``test`` score lies above 0 (beats the trivial
    baseline), by the paired interval or (``unpaired``) the independent one; True when no
    references exist to tell (nothing to check against)."""
    if domain not in ev.references:
        return True
    n = normalized_row(ev, rows, domain, learner, "test")
    if n is None:
        return False
    h = n.unpaired if unpaired else n.half_width()
    return n.mean - h > LEARNED_MARGIN


def comparison(
    domain: str,
    group: str,
    what: str,
    a: Estimate | None = None,
    b: Estimate | None = None,
    *,
    note: str = "",
    verdict: str = "",
    verdict_unpaired: str = "",
    interval: bool = True,
) -> dict[str, Any]:
    """One row of a claim's numbers: the oriented difference ``d = a - b`` (None when either is
    missing), its paired and unpaired 95% half-widths and verdicts, whether it paired, its
    effect size, and, inconclusive, the tasks (one seed) or seeds (several) a paired test would
    need to decide at 80% power at the observed effect and spread. ``verdict`` /
    ``verdict_unpaired`` force a verdict (the unpaired one follows the forced paired one);
    ``interval=False``: the difference is shown with no interval and no verdict."""
    out = {
        "domain": domain,
        "group": group,
        "what": what,
        "value": None,
        "ci95": None,
        "ci95_unpaired": None,
        "verdict": verdict or INCONCLUSIVE,
        "verdict_unpaired": verdict_unpaired or verdict or INCONCLUSIVE,
        "paired": False,
        "pairing": None,
        "effect_size": None,
        "tasks_needed": None,
        "seeds_needed": None,
        "note": note,
    }
    if a is None or b is None:
        return out
    d = a - b
    pairing = _pairing(a, b)
    out.update(value=d.mean, paired=not pairing.startswith("independent"), pairing=pairing)
    if not interval:
        return {**out, "verdict": None, "verdict_unpaired": None}
    h, u = half_width(d), d.unpaired if math.isfinite(d.unpaired) else None
    out.update(
        ci95=h,
        ci95_unpaired=u,
        effect_size=effect_size(d),
        verdict=verdict or decide(d.mean, h),
        verdict_unpaired=verdict_unpaired or verdict or decide(d.mean, u),
    )
    if out["verdict"] == INCONCLUSIVE:
        if any(k[0] == TASKS for k in unit_keys(d)):
            out["tasks_needed"] = tasks_needed(d)
        seeds = per_seed_values(d)
        if seeds is not None and seeds.size >= 2:
            # The spread the interval used, floor included (a seed-level key's floor, or a
            # task-level term beside it), so the plan names more seeds than there are.
            spread = math.sqrt(d.variance() * seeds.size)
            out["seeds_needed"] = seeds_needed(seeds, floor_sd=spread)
    return out


def domain_of(rows: Sequence[dict[str, Any]]) -> str:
    return rows[0]["domain"] if rows else ""
