"""The six claims of the lecture's trade-off table, each turned into comparisons of measured
numbers and a verdict computed by a stated rule, plus a compute-matched comparison (training
query loss at equal meta-training time) that is no claim of its own.

Everything here is a pure function of :class:`Evidence` (results rows, costs, training curves
and the registry), so the tests feed it constructed rows. The rules:

- **A comparison** is a difference ``d`` oriented so that ``d > 0`` is what the claim says, with
  the half-width ``h`` of its 95% interval: *supported* when ``d - h > 0``, *contradicted* when
  ``d + h < 0``, else *inconclusive*. ``h`` is **paired** (:mod:`metagym.stats`): each row is an
  :class:`~metagym.stats.Estimate` whose sampling units are the row's tasks (one seed; rows of one
  run, split and task group are on the same tasks, so differences are per-task differences) or
  the seeds (several: the Student-t interval across seeds of the per-seed differences); ratios
  (normalized scores, error removed) by the delta method. Rows without per-task scores (run
  folders made before ``scores.csv.gz``) are independent. Each comparison also carries the old
  independent rule (``h = sqrt(h_a^2 + h_b^2)``, :attr:`Estimate.unpaired`) and its verdict.
- **A claim** is *supported* when at least one of its comparisons supports it and none
  contradicts it, *contradicted* when at least one contradicts it and none supports it,
  *mixed* when some support it and others contradict it (decided neither way), else
  *inconclusive* (none decided). Claim 4 needs both of its parts.
  The same rule gives a verdict per domain and under the unpaired rule.
- **A family's representative** in a run is its learner with the best score on ``test`` (at the
  learner's reported steps); diverged learners are never representatives.
- **A learner that did not learn** (its normalized ``test`` score's interval does not lie above 0:
  no better than the trivial baseline) has nothing to lose or gain: comparisons that need it
  learned are inconclusive, saying so.
- A **diverged** row (a task whose score was not finite) counts against the learner it belongs to.
- A run that scores several metrics or task groups (Meta-World: ``success`` and ``return``, per
  env and over all envs) enters the claims once: over all its tasks, by success rate.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metagym.paired import orientation
from metagym.stats import Estimate, ratio, seeds_needed, tasks_needed

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
#: A claim some of whose comparisons support it and others contradict it: not decided either way.
MIXED = "mixed"
#: The verdicts of one comparison.
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE)
#: The verdicts of a claim (overall or per domain): a comparison's, or mixed.
CLAIM_VERDICTS = (SUPPORTED, CONTRADICTED, MIXED, INCONCLUSIVE)
FAMILIES = ("gradient", "black-box", "non-parametric")
COMPARISON_RULE = (
    "Each comparison is a difference d oriented so that d > 0 is what the claim says, with its "
    "95% interval half-width h: supported when d - h > 0, contradicted when d + h < 0, else "
    "inconclusive. h is paired: rows scored on the same tasks are compared task by task (one "
    "seed), or seed by seed (several seeds: Student-t across seeds of the per-seed differences); "
    "the independent interval sqrt(h_a^2 + h_b^2) and its verdict are shown beside it."
)
CLAIM_RULE = (
    "The claim is supported when at least one comparison supports it and none contradicts it, "
    "contradicted when at least one contradicts it and none supports it, mixed when some "
    "support it and others contradict it, else inconclusive (none decided). Mixed is not decided "
    "either way."
)


# -- numbers with intervals -------------------------------------------------------------------------
def decide(d: float | None, h: float | None) -> str:
    """The verdict of one comparison (see the module docstring); None: inconclusive."""
    if d is None or h is None or not math.isfinite(d) or not math.isfinite(h):
        return INCONCLUSIVE
    if d - h > 0:
        return SUPPORTED
    if d + h < 0:
        return CONTRADICTED
    return INCONCLUSIVE


def combine(verdicts: Iterable[str]) -> str:
    """A claim's verdict from its comparisons' verdicts (see the module docstring)."""
    verdicts = list(verdicts)
    supports, contradicts = SUPPORTED in verdicts, CONTRADICTED in verdicts
    if supports and not contradicts:
        return SUPPORTED
    if contradicts and not supports:
        return CONTRADICTED
    return MIXED if supports else INCONCLUSIVE


def both(first: str, second: str) -> str:
    """Two parts that must both hold: supported if both are, contradicted if either is, else
    mixed if either is, else inconclusive."""
    if CONTRADICTED in (first, second):
        return CONTRADICTED
    if first == second == SUPPORTED:
        return SUPPORTED
    return MIXED if MIXED in (first, second) else INCONCLUSIVE


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
    return Estimate.independent(
        float(row["mean"]), float(row.get("ci95") or 0.0), key=row_identity(row)
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
            out["seeds_needed"] = seeds_needed(seeds)
    return out


def domain_of(rows: Sequence[dict[str, Any]]) -> str:
    return rows[0]["domain"] if rows else ""


def verdicts_of(comparisons: Sequence[dict[str, Any]], key: str = "verdict") -> list[str]:
    """The verdicts (``key``: ``"verdict"`` or ``"verdict_unpaired"``) of the comparisons that
    have one."""
    return [c[key] for c in comparisons if c[key] is not None]


def counts_of(verdicts: Sequence[str]) -> dict[str, int]:
    return {v: list(verdicts).count(v) for v in VERDICTS}


def by_domain(comparisons: Sequence[dict[str, Any]], rule=None) -> dict[str, dict[str, Any]]:
    """Per domain: ``{"verdict", "verdict_unpaired", "counts", "counts_unpaired"}`` by
    :func:`combine` over that domain's comparisons (``rule(comparisons, key) -> verdict``
    instead, where given); a domain whose comparisons carry no verdict gets None."""
    out = {}
    for domain in dict.fromkeys(c["domain"] for c in comparisons):
        mine = [c for c in comparisons if c["domain"] == domain]
        entry = {}
        for key, suffix in (("verdict", ""), ("verdict_unpaired", "_unpaired")):
            verdicts = verdicts_of(mine, key)
            if rule is not None:
                entry[key] = rule(mine, key)
            else:
                entry[key] = combine(verdicts) if verdicts else None
            entry["counts" + suffix] = counts_of(verdicts)
        out[domain] = entry
    return out


def _claim(
    number: int | None,
    title: str,
    rule: str,
    comparisons: list[dict],
    *,
    verdict: str = "",
    verdict_unpaired: str = "",
    domains: dict | None = None,
    **extra,
) -> dict[str, Any]:
    verdicts = verdicts_of(comparisons)
    unpaired = verdicts_of(comparisons, "verdict_unpaired")
    return {
        "id": number,
        "title": title,
        "rule": rule,
        "verdict": verdict or (combine(verdicts) if verdicts or comparisons == [] else None),
        "verdict_unpaired": verdict_unpaired
        or (combine(unpaired) if unpaired or comparisons == [] else None),
        "counts": counts_of(verdicts),
        "counts_unpaired": counts_of(unpaired),
        "domains": by_domain(comparisons) if domains is None else domains,
        "comparisons": comparisons,
        **extra,
    }


# -- claim 1 ----------------------------------------------------------------------------------------
def ood_splits(rows: Sequence[dict[str, Any]], shifts: dict[str, tuple[str, int]]) -> list[str]:
    """The out-of-distribution splits of a run, one per kind of shift: the whole-range split when
    there is one (sinusoid ``ood-phase``), else the strongest level."""
    splits = list(dict.fromkeys(r["split"] for r in rows if r["split"].startswith("ood")))
    graded = [s for s in splits if s in shifts]
    whole = [s for s in splits if s not in shifts]
    chosen = list(whole)
    strongest: dict[str, tuple[int, str]] = {}
    for s in graded:
        kind, level = shifts[s]
        if kind not in strongest or level > strongest[kind][0]:
            strongest[kind] = (level, s)
    covered = {k for k in strongest if any(w == f"ood-{k}" for w in whole)}
    chosen += [s for k, (_, s) in strongest.items() if k not in covered]
    return chosen


def claim_1(ev: Evidence) -> dict[str, Any]:
    """Gradient learners keep improving with more test-time steps; the others have no lever."""
    comparisons = []
    levers = []
    for group in ev.groups():
        main = ev.of(group)
        domain = domain_of(main)
        sweep = ev.of(group, "sweep")
        for learner in learners_of(main, "gradient"):
            rows = [r for r in sweep if r["learner"] == learner] or [
                r for r in main if r["learner"] == learner
            ]
            source = "step sweep" if rows and rows[0].get("source") == "sweep" else "rows"
            steps = sorted({r["steps"] for r in rows if r["steps"] is not None})
            if 1 not in steps or steps[-1] <= 1:
                continue
            top = steps[-1]
            for split in ["test", *ood_splits(rows, ev.shifts.get(domain, {}))]:
                one, many = row_at(rows, learner, split, 1), row_at(rows, learner, split, top)
                what = f"{learner} on {split}: score after {top} steps - after 1 ({source})"
                if one is None or many is None:
                    continue
                if value(many) is None and value(one) is not None:
                    comparisons.append(
                        comparison(
                            domain,
                            group,
                            what,
                            note=f"diverged after {top} steps",
                            verdict=CONTRADICTED,
                        )
                    )
                    continue
                comparisons.append(comparison(domain, group, what, oriented(many), oriented(one)))
        for family in ("black-box", "non-parametric"):
            for learner in learners_of(main, family):
                steps = sorted(
                    {r["steps"] for r in main if r["learner"] == learner and r["steps"] is not None}
                )
                axis = "none: one forward pass over the support set"
                if steps:  # RL^2: the episodes of experience within a trial, not compute
                    axis = f"episodes of experience in the trial ({steps[0]}..{steps[-1]})"
                levers.append(
                    {
                        "domain": domain,
                        "group": group,
                        "learner": learner,
                        "family": family,
                        "test_time_lever": axis,
                    }
                )
    return _claim(
        1,
        "Gradient-based learners keep improving with more test-time gradient steps; black-box "
        "and non-parametric learners have no such lever",
        "for each gradient learner and split (test, and each kind of shift): d = score after the "
        "most evaluated steps - score after 1 step (higher is better; errors negated). A learner "
        "diverged at the most steps contradicts. The black-box and non-parametric learners' "
        "test-time axis is listed (none, or RL^2's episodes of experience); it has no verdict. "
        + CLAIM_RULE,
        comparisons,
        levers=levers,
    )


# -- claim 2 ----------------------------------------------------------------------------------------
def claim_2(ev: Evidence) -> dict[str, Any]:
    """Gradient learners lose less than black-box learners under shift (normalized drop)."""
    comparisons, curves = [], []
    for group in ev.groups():
        rows = ev.of(group)
        domain = domain_of(rows)
        shifts = ev.shifts.get(domain, {})
        splits = [s for s in dict.fromkeys(r["split"] for r in rows) if s in shifts]
        if not splits:
            continue
        reps = {f: representative(rows, f) for f in ("gradient", "black-box")}
        for family, learner in reps.items():
            if learner is None:
                continue
            for split in ["test", *splits]:
                n = normalized_row(ev, rows, domain, learner, split)
                kind, level = shifts.get(split, ("test", 0))
                curves.append(
                    {
                        "domain": domain,
                        "group": group,
                        "learner": learner,
                        "family": family,
                        "split": split,
                        "kind": kind,
                        "level": level,
                        "normalized": None if n is None else n.mean,
                        "ci95": None if n is None else half_width(n),
                    }
                )
        g, b = reps["gradient"], reps["black-box"]
        if g is None or b is None:
            missing = "gradient" if g is None else "black-box"
            comparisons.append(
                comparison(domain, group, f"no {missing} learner ran", note="not measured")
            )
            continue
        unlearned = [x for x in (g, b) if not learned(ev, rows, domain, x)]
        unlearned_unpaired = [x for x in (g, b) if not learned(ev, rows, domain, x, unpaired=True)]
        for split in sorted(splits, key=lambda s: shifts[s]):
            what = f"{split}: drop of {b} - drop of {g} (normalized)"
            if unlearned:
                comparisons.append(
                    comparison(domain, group, what, note=f"did not learn: {unlearned}")
                )
                continue
            drops = {}
            for x in (g, b):
                test_n = normalized_row(ev, rows, domain, x, "test")
                shift_n = normalized_row(ev, rows, domain, x, split)
                drops[x] = None if test_n is None or shift_n is None else test_n - shift_n
            if drops[g] is None and drops[b] is None:
                comparisons.append(comparison(domain, group, what, note="not measured"))
            elif drops[g] is None or drops[b] is None:
                diverged = g if drops[g] is None else b
                comparisons.append(
                    comparison(
                        domain,
                        group,
                        what,
                        note=f"{diverged} diverged or unscored",
                        verdict=CONTRADICTED if diverged == g else SUPPORTED,
                    )
                )
            else:
                forced = unlearned_unpaired and INCONCLUSIVE
                note = (
                    f"by the unpaired rule, did not learn: {unlearned_unpaired}" if forced else ""
                )
                comparisons.append(
                    comparison(
                        domain,
                        group,
                        what,
                        drops[b],
                        drops[g],
                        note=note,
                        verdict_unpaired=forced or "",
                    )
                )
    return _claim(
        2,
        "Gradient-based learners generalize better out of distribution than black-box learners",
        "per run and shifted split, each family is represented by its best learner on test; a "
        "learner's score is normalized as (score - trivial) / (oracle - trivial) on each split "
        "(the trivial baseline and oracle of the domain, named below), its drop is normalized "
        "test score - normalized shifted score, and d = drop(black-box) - drop(gradient). A "
        "learner that did not beat the trivial baseline on test has nothing to lose: its "
        "comparisons are inconclusive. " + CLAIM_RULE,
        comparisons,
        curves=curves,
    )


# -- claim 3 ----------------------------------------------------------------------------------------
def error_of(row: dict[str, Any] | None) -> Estimate | None:
    """Distance from a perfect score: the MSE itself, or 1 - accuracy (None: other metrics)."""
    v = value(row)
    if v is None:
        return None
    if row["metric"] == "mse":
        return v
    if row["metric"] == "accuracy":
        return 1 - v
    return None


def claim_3(ev: Evidence) -> dict[str, Any]:
    """Black-box learners gain less from more shots than the other families."""
    comparisons, curves = [], []
    for domain in ev.domains:
        by_shots: dict[int, list[dict]] = {}
        for group in ev.groups(primary_only=False):
            rows = ev.of(group)
            if domain_of(rows) != domain or "shots" not in rows[0]:
                continue
            by_shots.setdefault(int(rows[0]["shots"]), []).extend(rows)
        for shots, rows in sorted(by_shots.items()):
            for learner in learners_of(rows):
                family = family_of(rows, learner)
                v = value(row_at(rows, learner, "test"))
                curves.append(
                    {
                        "domain": domain,
                        "shots": shots,
                        "learner": learner,
                        "family": family,
                        "metric": rows[0]["metric"],
                        "mean": None if v is None else v.mean,
                        "ci95": None if v is None else half_width(v),
                    }
                )
        if len(by_shots) < 2:
            if any(r["domain"] == domain for r in ev.rows):
                what = "one number of shots only" if by_shots else "no shots in this domain"
                note = "not measured" if by_shots else "not counted: return against experience"
                comparisons.append(comparison(domain, "", what, note=note))
            continue
        low, high = min(by_shots), max(by_shots)
        gains = {}
        for family in FAMILIES:
            learner = representative(by_shots[low], family)
            if learner is None:
                continue
            if not learned(ev, by_shots[low], domain, learner):
                gains[family] = (learner, None, "did not learn", False)
                continue
            before = error_of(row_at(by_shots[low], learner, "test"))
            after = error_of(row_at(by_shots[high], learner, "test"))
            r = None if before is None or after is None else reduction(before, after)
            why = "" if r is not None else "diverged or unscored"
            gains[family] = (
                learner, r, why, learned(ev, by_shots[low], domain, learner, unpaired=True)
            )  # fmt: skip
        if "black-box" not in gains:
            comparisons.append(
                comparison(domain, "", "no black-box learner ran", note="not measured")
            )
            continue
        bb, r_bb, why_bb, ok_bb = gains["black-box"]
        for family in ("gradient", "non-parametric"):
            if family not in gains:
                continue
            learner, r, why, ok = gains[family]
            what = f"K {low} -> {high}: error removed by {learner} ({family}) - by {bb} (black-box)"
            unlearned = [x for x, fine in ((learner, ok), (bb, ok_bb)) if not fine]
            forced = r is not None and r_bb is not None and unlearned and INCONCLUSIVE
            note = "; ".join(
                x
                for x in (
                    why and f"{learner}: {why}",
                    why_bb and f"{bb}: {why_bb}",
                    forced and f"by the unpaired rule, did not learn: {unlearned}",
                )
                if x
            )
            comparisons.append(
                comparison(
                    domain, f"K={low},{high}", what, r, r_bb, note=note,
                    verdict_unpaired=forced or "",
                )
            )  # fmt: skip
    return _claim(
        3,
        "Black-box learners are hard to scale to more shots",
        "per domain with several numbers of shots K, each family is represented by its best "
        "learner on test at the smallest K; its error (MSE, or 1 - accuracy) on test at the "
        "smallest and largest K gives the fraction of error removed, 1 - error(K max) / "
        "error(K min); d = removed by the gradient (or non-parametric) representative - removed "
        "by the black-box one. RL has no shots: its figure shows return against experience, not "
        "counted. " + CLAIM_RULE,
        comparisons,
        curves=curves,
    )


# -- claim 4 ----------------------------------------------------------------------------------------
CLASSIFICATION_METRICS = ("accuracy",)


def _part_a(verdicts: Sequence[str]) -> str:
    """Applicability: one domain that contradicts it contradicts the part."""
    return CONTRADICTED if CONTRADICTED in verdicts else combine(verdicts)


def primary_rows(ev: Evidence, domain: str) -> dict[str, list[dict[str, Any]]]:
    """Primary group -> its scored rows, for the groups of ``domain``."""
    out = {}
    for group in ev.groups():
        rows = ev.of(group)
        if rows and domain_of(rows) == domain:
            out[group] = rows
    return out


def claim_4(ev: Evidence) -> dict[str, Any]:
    """Non-parametric learners: strong in classification, absent from regression and RL."""
    matrix = []
    applicability = []
    for domain in ev.domains:
        families = ev.recipes.get(domain, {})
        groups = primary_rows(ev, domain)
        domain_rows = [r for rows in groups.values() for r in rows]
        classification = ev.kinds.get(domain) == "classification"
        for family in (*FAMILIES, "baseline"):
            registered = families.get(family, [])
            ran = learners_of([r for r in domain_rows if r.get("family") == family])
            best = []
            for group, rows in groups.items():
                rep = representative(rows, family)
                v = value(row_at(rows, rep, "test")) if rep else None
                if v is not None:
                    best.append(
                        {"group": group, "learner": rep, "mean": v.mean, "ci95": half_width(v)}
                    )
            status = "ran" if ran else ("registered, not run" if registered else "no recipe")
            matrix.append(
                {
                    "domain": domain,
                    "family": family,
                    "status": status,
                    "registered": registered,
                    "ran": ran,
                    "best": best,
                }
            )
        has_np = bool(families.get("non-parametric"))
        if domain not in ev.kinds:
            continue
        expect = "applies" if classification else "does not apply"
        recipe = "a non-parametric recipe" if has_np else "no non-parametric recipe"
        what = f"{ev.kinds[domain]}: non-parametric {expect}; the registry has {recipe}"
        verdict = SUPPORTED if has_np == classification else CONTRADICTED
        applicability.append(comparison(domain, "registry", what, verdict=verdict))
    strength = []
    for group in ev.groups():
        rows = ev.of(group)
        if not rows or rows[0]["metric"] not in CLASSIFICATION_METRICS:
            continue
        domain = domain_of(rows)
        np_rep = representative(rows, "non-parametric")
        if np_rep is None:
            strength.append(
                comparison(domain, group, "no non-parametric learner ran", note="not measured")
            )
            continue
        for family in ("gradient", "black-box"):
            other = representative(rows, family)
            if other is None:
                continue
            a, b = oriented(row_at(rows, np_rep, "test")), oriented(row_at(rows, other, "test"))
            strength.append(comparison(domain, group, f"test: {np_rep} - {other} ({family})", a, b))

    def parts(comparisons: Sequence[dict], key: str) -> tuple[str, str]:
        mine_a = [c[key] for c in comparisons if c["group"] == "registry"]
        mine_b = [c[key] for c in comparisons if c["group"] != "registry"]
        return _part_a(mine_a), combine(mine_b)

    def rule(comparisons: Sequence[dict], key: str) -> str:
        part_a, part_b = parts(comparisons, key)
        classification = ev.kinds.get(comparisons[0]["domain"]) == "classification"
        return both(part_a, part_b) if classification else part_a

    everything = applicability + strength
    part_a, part_b = parts(everything, "verdict")
    part_a_u, part_b_u = parts(everything, "verdict_unpaired")
    domains = by_domain(everything, rule)
    for domain, entry in domains.items():
        entry["rule"] = (
            "both parts (applicability from the registry, strength on this domain's runs)"
            if ev.kinds.get(domain) == "classification"
            else "applicability only: strength is measured on classification runs, none here"
        )
    return _claim(
        4,
        "Non-parametric learners are strong for classification but do not apply to regression "
        "or RL",
        "two parts that must both hold. Applicability, from the registry: each domain with "
        "classification tasks should have a non-parametric recipe and each other domain none (one "
        "domain that does not contradicts the part). "
        "Strength: per classification run, d = test score of the best non-parametric learner - "
        "that of the best gradient (and black-box) learner, decided as a claim is. Per domain: "
        "both parts on a classification domain, applicability alone on the others. " + CLAIM_RULE,
        everything,
        verdict=both(part_a, part_b),
        verdict_unpaired=both(part_a_u, part_b_u),
        domains=domains,
        matrix=matrix,
        parts={"applicability": part_a, "strength": part_b},
        parts_unpaired={"applicability": part_a_u, "strength": part_b_u},
    )


# -- claim 5 ----------------------------------------------------------------------------------------
#: Fields of a cost that carry its units (not shown in claim 5's table).
COST_UNIT_FIELDS = ("per_update_units", "per_update_key", "per_update_seed_level")


def cost_estimate(cost: dict[str, Any]) -> Estimate | None:
    """Seconds per meta-update with what its uncertainty is made of: the logged chunks (one
    seed; their own key, so two learners' chunks never pair) or the per-seed means (several
    seeds: they pair seed by seed); else its interval, independent; None when not measured."""
    if cost.get("per_update_units"):
        return Estimate.of_units(
            cost["per_update_units"],
            tuple(cost["per_update_key"]),
            seed_level=bool(cost.get("per_update_seed_level")),
        )
    if cost.get("per_update_s") is None:
        return None
    return Estimate.independent(
        float(cost["per_update_s"]),
        float(cost.get("per_update_ci95") or 0.0),
        key=("cost", cost.get("group"), cost["learner"]),
    )


def claim_5(ev: Evidence) -> dict[str, Any]:
    """Gradient meta-training costs more per meta-update than the other families'."""
    comparisons, table = [], []
    for group in ev.groups():
        rows = ev.of(group)
        domain = domain_of(rows)
        costs = {c["learner"]: c for c in ev.costs if c["group"] == group}
        for learner, cost in costs.items():
            n = normalized_row(ev, rows, domain, learner, "test")
            minutes = (cost.get("train_s") or 0) / 60
            per_minute = n.mean / minutes if n is not None and minutes > 0 else None
            table.append(
                {
                    **{k: v for k, v in cost.items() if k not in COST_UNIT_FIELDS},
                    "normalized_test": None if n is None else n.mean,
                    "normalized_per_minute": per_minute,
                }
            )
        trained = {k: c for k, c in costs.items() if c.get("iterations")}
        reps = {}
        for family in FAMILIES:
            mine = [r for r in rows if r["learner"] in trained]
            reps[family] = representative(mine, family)
        g = reps["gradient"]
        if g is None:
            continue
        for family in ("black-box", "non-parametric"):
            other = reps[family]
            if other is None:
                continue
            a, b = cost_estimate(trained[g]), cost_estimate(trained[other])
            what = f"time per meta-update: {g} - {other} ({family})"
            if a is None or b is None:
                comparisons.append(comparison(domain, group, what, note="not measured"))
                continue
            note = (
                f"meta-batch {trained[g].get('meta_batch')} vs {trained[other].get('meta_batch')}"
            )
            comparisons.append(comparison(domain, group, what, a, b, note=note))
    return _claim(
        5,
        "Gradient-based meta-training costs more",
        "per primary run, each family is represented by its best meta-trained learner on test; "
        "d = time per meta-update of the gradient representative - that of the black-box (and "
        "non-parametric) representative, in seconds, with the interval across the logged "
        "chunks of training (one seed: the learners' chunks are not paired) or across seeds "
        "(per-seed means, paired seed by seed). Wall time of meta-training, peak memory and "
        "normalized test score per minute of meta-training are shown for every learner; they "
        "carry no interval and do not enter the verdict. " + CLAIM_RULE,
        comparisons,
        table=table,
    )


# -- claim 6 ----------------------------------------------------------------------------------------
#: The sequence models of the supervised domains' black-box recipes (for hand-built evidence).
DEFAULT_SEQUENCE_MODELS = {"blackbox": "lstm", "transformer": "transformer"}
RECURRENT = ("lstm", "gru")


def sequence_pair(ev: Evidence, domain: str) -> tuple[str | None, str | None]:
    """The domain's attention-based and recurrent black-box learners (the first registered of
    each; None where it has none)."""
    models = ev.sequence_models.get(domain, DEFAULT_SEQUENCE_MODELS)
    registered = [n for names in ev.recipes.get(domain, {}).values() for n in names]
    attention = next((n for n in registered if models.get(n) == "transformer"), None)
    recurrent = next((n for n in registered if models.get(n) in RECURRENT), None)
    return attention, recurrent


def claim_6(ev: Evidence) -> dict[str, Any]:
    """The transformer in-context learner beats the recurrent black-box learner (the LSTM; RL^2's
    GRU in RL) at the same budget."""
    comparisons = []
    for domain in ev.domains:
        attention, recurrent = sequence_pair(ev, domain)
        if attention is None or recurrent is None:
            missing = [
                kind
                for kind, n in (("transformer", attention), ("recurrent (LSTM or GRU)", recurrent))
                if n is None
            ]
            comparisons.append(
                comparison(
                    domain,
                    "registry",
                    f"no {' and no '.join(missing)} recipe",
                    note="not measured",
                )
            )
            continue
        what = f"test: {attention} - {recurrent}"
        for group, rows in primary_rows(ev, domain).items():
            ran = learners_of(rows)
            if attention not in ran or recurrent not in ran:
                comparisons.append(
                    comparison(
                        domain,
                        group,
                        f"{attention} or {recurrent} did not run",
                        note="not measured",
                    )
                )
                continue
            costs = {c["learner"]: c for c in ev.costs if c["group"] == group}
            budgets = [
                (costs.get(n, {}).get("iterations"), costs.get(n, {}).get("meta_batch"))
                for n in (attention, recurrent)
            ]
            note = (
                "" if budgets[0] == budgets[1] else f"budgets differ: {budgets[0]} vs {budgets[1]}"
            )
            a = oriented(row_at(rows, attention, "test"))
            b = oriented(row_at(rows, recurrent, "test"))
            if a is None or b is None:
                diverged = attention if a is None else recurrent
                comparisons.append(
                    comparison(
                        domain,
                        group,
                        what,
                        note=f"{diverged} diverged",
                        verdict=CONTRADICTED if diverged == attention else SUPPORTED,
                    )
                )
                continue
            comparisons.append(comparison(domain, group, what, a, b, note=note))
    return _claim(
        6,
        "A better sequence model makes a better black-box learner (transformer against LSTM or GRU)",
        "per primary run where the domain has an attention-based and a recurrent black-box "
        "recipe (the recipes' sequence_model: the transformer against the LSTM `blackbox`, or "
        "against RL^2's GRU `rl2` in RL) and both ran: d = test score of the transformer - test "
        "score of the recurrent learner (higher is better; errors negated; RL: at the reported "
        "episode of the trial), at the report's budget (the same for both unless noted). A "
        "domain without both recipes is not measured. " + CLAIM_RULE,
        comparisons,
    )


# -- compute-matched -------------------------------------------------------------------------------
def loss_at(curve: dict[str, Any], seconds: float) -> float | None:
    """The loss of the last logged point at or before ``seconds`` of meta-training (None: none)."""
    last = None
    for t, loss in zip(curve["seconds"], curve["loss"], strict=True):
        if t > seconds * (1 + 1e-9):
            break
        last = loss
    return last


COMPUTE_STATEMENT = (
    "At equal meta-training time, the gradient-based representative reaches a lower query loss "
    "on its training meta-batches than the black-box (and non-parametric) representative"
)


def compute_matched(ev: Evidence) -> dict[str, Any]:
    """Training query loss of each family's representative at equal meta-training time: per
    primary run and seed, T = the shorter of the two trainings (cumulative seconds from
    ``metrics.csv``), each learner's loss at its last logged point at or before T; with several
    seeds the interval is across seeds (paired seed by seed), with one there is none."""
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
            seeds = list(zip(usable[g], usable[other], strict=False))
            times = [min(a["seconds"][-1], b["seconds"][-1]) for a, b in seeds]
            losses = [
                (loss_at(a, t), loss_at(b, t)) for (a, b), t in zip(seeds, times, strict=True)
            ]
            what = f"query loss at equal training time: {other} ({family}) - {g} (gradient)"
            pair = {
                "domain": domain,
                "group": group,
                "gradient": g,
                "other": other,
                "family": family,
                "seconds": times,
                "loss_gradient": [x for x, _ in losses],
                "loss_other": [y for _, y in losses],
                "loss_columns": [usable[g][0]["loss_column"], usable[other][0]["loss_column"]],
            }
            pairs.append(pair)
            if any(x is None or y is None for x, y in losses):
                comparisons.append(
                    comparison(domain, group, what, note="no logged point by the shorter time")
                )
                continue
            key = seed_key(group)
            if len(losses) == 1:
                a, b = Estimate.constant(-losses[0][0]), Estimate.constant(-losses[0][1])
                comparisons.append(
                    comparison(
                        domain, group, what, a, b, interval=False, note="one seed: no interval"
                    )
                )
                continue
            a = Estimate.of_units([-x for x, _ in losses], key, seed_level=True)
            b = Estimate.of_units([-y for _, y in losses], key, seed_level=True)
            comparisons.append(comparison(domain, group, what, a, b))
    return _claim(
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


CLAIMS = (claim_1, claim_2, claim_3, claim_4, claim_5, claim_6)


def all_claims(ev: Evidence) -> list[dict[str, Any]]:
    """Every claim's numbers and verdict."""
    return [claim(ev) for claim in CLAIMS]


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _width_medians(widths: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """Of (paired, unpaired) half-widths: how many, both medians and the median of the ratios."""
    return {
        "n_comparisons": len(widths),
        "median_ci95": _median([h for h, _ in widths]),
        "median_ci95_unpaired": _median([u for _, u in widths]),
        "median_ratio": _median([h / u for h, u in widths if u > 0]),
    }


def interval_summary(claims: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How the paired rule compares with the unpaired one over ``claims``: the median paired and
    unpaired half-widths over the comparisons that have both (their ratio, and the median of
    the per-comparison ratios), how many comparisons paired, and how many claims and (claim,
    domain) pairs each rule decides (supported or contradicted). ``by_claim_domain``: the same
    medians per (claim, domain), which say where pairing removes a shared effect and where not."""
    widths = {}  # (claim, domain) -> [(paired, unpaired)], in the claims' order
    for claim in claims:
        for c in claim["comparisons"]:
            if c["ci95"] is not None and c["ci95_unpaired"] is not None:
                widths.setdefault((claim["id"], c["domain"]), []).append(
                    (c["ci95"], c["ci95_unpaired"])
                )
    overall = _width_medians([w for ws in widths.values() for w in ws])
    paired_median, unpaired_median = overall["median_ci95"], overall["median_ci95_unpaired"]
    decided = {}
    for key, name in (("verdict", "paired"), ("verdict_unpaired", "unpaired")):
        decided[name] = {
            "claims": sum(c[key] in (SUPPORTED, CONTRADICTED) for c in claims),
            "claim_domains": sum(
                d[key] in (SUPPORTED, CONTRADICTED) for c in claims for d in c["domains"].values()
            ),
            "comparisons": sum(
                x[key] in (SUPPORTED, CONTRADICTED) for c in claims for x in c["comparisons"]
            ),
        }
    return {
        **overall,
        "n_paired": sum(c["paired"] for claim in claims for c in claim["comparisons"]),
        "ratio_of_medians": paired_median / unpaired_median
        if paired_median is not None and unpaired_median
        else None,
        "n_claims": len(claims),
        "n_claim_domains": sum(len(c["domains"]) for c in claims),
        "decided": decided,
        "by_claim_domain": [
            {"claim": claim_id, "domain": domain, **_width_medians(ws)}
            for (claim_id, domain), ws in widths.items()
        ],
    }
