"""The six claims of the lecture's trade-off table, each turned into comparisons of measured
numbers and a verdict computed by a stated rule.

Everything here is a pure function of :class:`Evidence` (results rows, costs and the registry),
so the tests feed it constructed rows. The rules:

- **A comparison** is a difference ``d`` oriented so that ``d > 0`` is what the claim says, with
  the half-width ``h`` of its 95% interval: *supported* when ``d - h > 0``, *contradicted* when
  ``d + h < 0``, else *inconclusive*. The difference of two independent means has
  ``h = sqrt(h_a^2 + h_b^2)``; ratios get their intervals by the delta method (first order).
  Rows scored on the same tasks are positively correlated, so these intervals are conservative.
- **A claim** is *supported* when at least one of its comparisons supports it and none
  contradicts it, *contradicted* when at least one contradicts it and none supports it, else
  *inconclusive* (nothing decided, or comparisons that disagree). Claim 4 needs both of its parts.
- **A family's representative** in a run is its learner with the best score on ``test`` (at the
  learner's reported steps); diverged learners are never representatives.
- **A learner that did not learn** (its normalized ``test`` score's interval does not lie above 0:
  no better than the trivial baseline) has nothing to lose or gain: comparisons that need it
  learned are inconclusive, saying so.
- A **diverged** row (a task whose score was not finite) counts against the learner it belongs to.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE)
FAMILIES = ("gradient", "black-box", "non-parametric")
COMPARISON_RULE = (
    "Each comparison is a difference d oriented so that d > 0 is what the claim says, with its "
    "95% interval half-width h: supported when d - h > 0, contradicted when d + h < 0, else "
    "inconclusive."
)
CLAIM_RULE = (
    "The claim is supported when at least one comparison supports it and none contradicts it, "
    "contradicted when at least one contradicts it and none supports it, else inconclusive."
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
    return INCONCLUSIVE


def both(first: str, second: str) -> str:
    """Two parts that must both hold: supported if both are, contradicted if either is."""
    if CONTRADICTED in (first, second):
        return CONTRADICTED
    return SUPPORTED if first == second == SUPPORTED else INCONCLUSIVE


def diff_ci(*halves: float) -> float:
    """Half-width of a sum or difference of independent estimates."""
    return math.sqrt(sum(h * h for h in halves))


@dataclass(frozen=True)
class Value:
    """A mean with the half-width of its 95% interval (``ci95``)."""

    mean: float
    ci95: float

    def __sub__(self, other: Value) -> Value:
        return Value(self.mean - other.mean, diff_ci(self.ci95, other.ci95))


def normalized(score: Value, trivial: Value, oracle: Value) -> Value | None:
    """``(score - trivial) / (oracle - trivial)``: the fraction of the gap between the trivial
    baseline and the oracle that a learner closes (1: the oracle, 0: the trivial baseline), with
    a delta-method interval; None when the gap is zero."""
    gap = oracle.mean - trivial.mean
    if abs(gap) < 1e-12:
        return None
    mean = (score.mean - trivial.mean) / gap
    h = math.sqrt(
        (score.ci95 / gap) ** 2
        + (trivial.ci95 * (score.mean - oracle.mean) / gap**2) ** 2
        + (oracle.ci95 * (score.mean - trivial.mean) / gap**2) ** 2
    )
    return Value(mean, h)


def reduction(before: Value, after: Value) -> Value | None:
    """``1 - after / before``: the fraction of an error removed (delta-method interval)."""
    if before.mean <= 0:
        return None
    mean = 1 - after.mean / before.mean
    h = math.sqrt(
        (after.ci95 / before.mean) ** 2 + (after.mean * before.ci95 / before.mean**2) ** 2
    )
    return Value(mean, h)


# -- the evidence -----------------------------------------------------------------------------------
@dataclass
class Evidence:
    """What the claims are computed from.

    Attributes:
        rows: results rows (the common schema) with ``group`` (``experiment/variant``: rows of one
            group are scored on the same tasks), ``primary`` (claims 1, 2, 5, 6 read primary
            groups), ``source`` (``"main"``, or ``"sweep"`` for Omniglot's step sweep) and
            ``report_steps`` (the learner's reported step count, None: the largest).
        costs: per learner and group: ``domain, group, learner, family, iterations, meta_batch,
            train_s, per_update_s, per_update_ci95, growth_mb, peak_mb, memory_measure``.
        recipes: domain -> family -> registered learner names (the registry).
        shifts: domain -> shifted split -> (kind, level rank 1..n, mild to strong).
        references: domain -> ``{"trivial": ..., "oracle": ...}``, each ``{"learner", "steps"}``
            (a learner's row, ``steps`` ``"reported"`` or a count) or ``{"value"}`` (a constant
            such as chance accuracy), with a ``"label"``.
        domains: the domains the report covers (claim 4 lists every one of them).
        kinds: domain -> ``"classification"``, ``"regression"`` or ``"reinforcement learning"``.
    """

    rows: list[dict[str, Any]]
    costs: list[dict[str, Any]] = field(default_factory=list)
    recipes: dict[str, dict[str, list[str]]] = field(default_factory=dict)
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

    def groups(self, primary_only: bool = True) -> list[str]:
        return list(
            dict.fromkeys(
                r["group"] for r in self.rows if r.get("primary", True) or not primary_only
            )
        )

    def of(self, group: str, source: str = "main") -> list[dict[str, Any]]:
        return [r for r in self.rows if r["group"] == group and r.get("source", "main") == source]


def sign(row: dict[str, Any]) -> int:
    """+1 where higher is better (accuracy, return), -1 for errors (mse)."""
    return -1 if row["metric"] in ("mse", "loss", "error") else 1


def value(row: dict[str, Any] | None) -> Value | None:
    """The row's mean and interval; None for a missing or diverged row."""
    if row is None or row.get("diverged") or row.get("mean") is None:
        return None
    return Value(float(row["mean"]), float(row.get("ci95") or 0.0))


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


def oriented(row: dict[str, Any] | None) -> Value | None:
    """The row's value with higher always better (errors negated)."""
    v = value(row)
    return None if v is None else Value(sign(row) * v.mean, v.ci95)


def representative(rows: Sequence[dict[str, Any]], family: str, split: str = "test") -> str | None:
    """The family's learner with the best reported score on ``split`` (None: none ran or all
    diverged)."""
    best, best_value = None, -math.inf
    for learner in learners_of(rows, family):
        v = oriented(row_at(rows, learner, split))
        if v is not None and v.mean > best_value:
            best, best_value = learner, v.mean
    return best


def reference(ev: Evidence, rows: Sequence[dict[str, Any]], domain: str, which: str, split: str):
    """The trivial or oracle reference value on ``split`` (None when not measured)."""
    spec = ev.references.get(domain, {}).get(which)
    if spec is None:
        return None
    if "value" in spec:
        return Value(float(spec["value"]), 0.0)
    return value(row_at(rows, spec["learner"], split, spec.get("steps", "reported")))


def normalized_row(
    ev: Evidence, rows: Sequence[dict[str, Any]], domain: str, learner: str, split: str
) -> Value | None:
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


def learned(ev: Evidence, rows: Sequence[dict[str, Any]], domain: str, learner: str) -> bool:
    """True when the learner's normalized ``test`` score lies above 0 (beats the trivial
    baseline); True when no references exist to tell (nothing to check against)."""
    if domain not in ev.references:
        return True
    n = normalized_row(ev, rows, domain, learner, "test")
    return n is not None and n.mean - n.ci95 > LEARNED_MARGIN


def comparison(
    domain: str, group: str, what: str, d: Value | None, *, note: str = "", verdict: str = ""
) -> dict[str, Any]:
    """One row of a claim's numbers: the oriented difference, its interval and verdict."""
    return {
        "domain": domain,
        "group": group,
        "what": what,
        "value": None if d is None else d.mean,
        "ci95": None if d is None else d.ci95,
        "verdict": verdict or (decide(d.mean, d.ci95) if d is not None else INCONCLUSIVE),
        "note": note,
    }


def domain_of(rows: Sequence[dict[str, Any]]) -> str:
    return rows[0]["domain"] if rows else ""


def _claim(number: int, title: str, rule: str, comparisons: list[dict], verdict: str = "", **extra):
    verdicts = [c["verdict"] for c in comparisons]
    verdict = verdict or combine(verdicts)
    counts = {v: verdicts.count(v) for v in VERDICTS}
    return {
        "id": number,
        "title": title,
        "rule": rule,
        "verdict": verdict,
        "counts": counts,
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
                            None,
                            note=f"diverged after {top} steps",
                            verdict=CONTRADICTED,
                        )
                    )
                    continue
                a, b = oriented(many), oriented(one)
                comparisons.append(
                    comparison(domain, group, what, None if a is None or b is None else a - b)
                )
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
                        "ci95": None if n is None else n.ci95,
                    }
                )
        g, b = reps["gradient"], reps["black-box"]
        if g is None or b is None:
            missing = "gradient" if g is None else "black-box"
            comparisons.append(
                comparison(domain, group, f"no {missing} learner ran", None, note="not measured")
            )
            continue
        unlearned = [x for x in (g, b) if not learned(ev, rows, domain, x)]
        for split in sorted(splits, key=lambda s: shifts[s]):
            what = f"{split}: drop of {b} - drop of {g} (normalized)"
            if unlearned:
                comparisons.append(
                    comparison(domain, group, what, None, note=f"did not learn: {unlearned}")
                )
                continue
            drops = {}
            for x in (g, b):
                test_n = normalized_row(ev, rows, domain, x, "test")
                shift_n = normalized_row(ev, rows, domain, x, split)
                drops[x] = None if test_n is None or shift_n is None else test_n - shift_n
            if drops[g] is None and drops[b] is None:
                comparisons.append(comparison(domain, group, what, None, note="not measured"))
            elif drops[g] is None or drops[b] is None:
                diverged = g if drops[g] is None else b
                comparisons.append(
                    comparison(
                        domain,
                        group,
                        what,
                        None,
                        note=f"{diverged} diverged or unscored",
                        verdict=CONTRADICTED if diverged == g else SUPPORTED,
                    )
                )
            else:
                comparisons.append(comparison(domain, group, what, drops[b] - drops[g]))
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
def error_of(row: dict[str, Any] | None) -> Value | None:
    """Distance from a perfect score: the MSE itself, or 1 - accuracy (None: other metrics)."""
    v = value(row)
    if v is None:
        return None
    if row["metric"] == "mse":
        return v
    if row["metric"] == "accuracy":
        return Value(1 - v.mean, v.ci95)
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
                        "ci95": None if v is None else v.ci95,
                    }
                )
        if len(by_shots) < 2:
            if any(r["domain"] == domain for r in ev.rows):
                what = "one number of shots only" if by_shots else "no shots in this domain"
                note = "not measured" if by_shots else "not counted: return against experience"
                comparisons.append(comparison(domain, "", what, None, note=note))
            continue
        low, high = min(by_shots), max(by_shots)
        gains = {}
        for family in FAMILIES:
            learner = representative(by_shots[low], family)
            if learner is None:
                continue
            if not learned(ev, by_shots[low], domain, learner):
                gains[family] = (learner, None, "did not learn")
                continue
            before = error_of(row_at(by_shots[low], learner, "test"))
            after = error_of(row_at(by_shots[high], learner, "test"))
            r = None if before is None or after is None else reduction(before, after)
            gains[family] = (learner, r, "" if r is not None else "diverged or unscored")
        if "black-box" not in gains:
            comparisons.append(
                comparison(domain, "", "no black-box learner ran", None, note="not measured")
            )
            continue
        bb, r_bb, why_bb = gains["black-box"]
        for family in ("gradient", "non-parametric"):
            if family not in gains:
                continue
            learner, r, why = gains[family]
            what = f"K {low} -> {high}: error removed by {learner} ({family}) - by {bb} (black-box)"
            note = "; ".join(
                x for x in (why and f"{learner}: {why}", why_bb and f"{bb}: {why_bb}") if x
            )
            d = None if r is None or r_bb is None else r - r_bb
            comparisons.append(comparison(domain, f"K={low},{high}", what, d, note=note))
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


def claim_4(ev: Evidence) -> dict[str, Any]:
    """Non-parametric learners: strong in classification, absent from regression and RL."""
    matrix = []
    applicability = []
    for domain in ev.domains:
        families = ev.recipes.get(domain, {})
        domain_rows = [r for r in ev.rows if r["domain"] == domain and r.get("primary", True)]
        classification = ev.kinds.get(domain) == "classification"
        for family in (*FAMILIES, "baseline"):
            registered = families.get(family, [])
            ran = learners_of([r for r in domain_rows if r.get("family") == family])
            best = None
            for group in dict.fromkeys(r["group"] for r in domain_rows):
                rows = [r for r in domain_rows if r["group"] == group]
                rep = representative(rows, family)
                v = value(row_at(rows, rep, "test")) if rep else None
                if v is not None:
                    best = (best or []) + [
                        {"group": group, "learner": rep, "mean": v.mean, "ci95": v.ci95}
                    ]
            status = "ran" if ran else ("registered, not run" if registered else "no recipe")
            matrix.append(
                {
                    "domain": domain,
                    "family": family,
                    "status": status,
                    "registered": registered,
                    "ran": ran,
                    "best": best or [],
                }
            )
        has_np = bool(families.get("non-parametric"))
        if domain not in ev.kinds:
            continue
        expect = "applies" if classification else "does not apply"
        recipe = "a non-parametric recipe" if has_np else "no non-parametric recipe"
        what = f"{ev.kinds[domain]}: non-parametric {expect}; the registry has {recipe}"
        verdict = SUPPORTED if has_np == classification else CONTRADICTED
        applicability.append(comparison(domain, "registry", what, None, verdict=verdict))
    strength = []
    for group in ev.groups():
        rows = ev.of(group)
        if not rows or rows[0]["metric"] not in CLASSIFICATION_METRICS:
            continue
        domain = domain_of(rows)
        np_rep = representative(rows, "non-parametric")
        if np_rep is None:
            strength.append(
                comparison(
                    domain, group, "no non-parametric learner ran", None, note="not measured"
                )
            )
            continue
        for family in ("gradient", "black-box"):
            other = representative(rows, family)
            if other is None:
                continue
            a, b = oriented(row_at(rows, np_rep, "test")), oriented(row_at(rows, other, "test"))
            strength.append(
                comparison(
                    domain,
                    group,
                    f"test: {np_rep} - {other} ({family})",
                    None if a is None or b is None else a - b,
                )
            )
    verdicts = [c["verdict"] for c in applicability]
    part_a = CONTRADICTED if CONTRADICTED in verdicts else combine(verdicts)
    part_b = combine(c["verdict"] for c in strength)
    return _claim(
        4,
        "Non-parametric learners are strong for classification but do not apply to regression "
        "or RL",
        "two parts that must both hold. Applicability, from the registry: each domain with "
        "classification tasks should have a non-parametric recipe and each other domain none (one "
        "domain that does not contradicts the part). "
        "Strength: per classification run, d = test score of the best non-parametric learner - "
        "that of the best gradient (and black-box) learner, decided as a claim is. " + CLAIM_RULE,
        applicability + strength,
        verdict=both(part_a, part_b),
        matrix=matrix,
        parts={"applicability": part_a, "strength": part_b},
    )


# -- claim 5 ----------------------------------------------------------------------------------------
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
                    **cost,
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
            a, b = trained[g], trained[other]
            what = f"time per meta-update: {g} - {other} ({family})"
            if a.get("per_update_s") is None or b.get("per_update_s") is None:
                comparisons.append(comparison(domain, group, what, None, note="not measured"))
                continue
            d = Value(a["per_update_s"], a.get("per_update_ci95") or 0.0) - Value(
                b["per_update_s"], b.get("per_update_ci95") or 0.0
            )
            note = f"meta-batch {a.get('meta_batch')} vs {b.get('meta_batch')}"
            comparisons.append(comparison(domain, group, what, d, note=note))
    return _claim(
        5,
        "Gradient-based meta-training costs more",
        "per primary run, each family is represented by its best meta-trained learner on test; "
        "d = time per meta-update of the gradient representative - that of the black-box (and "
        "non-parametric) representative, in seconds, with the interval across the logged "
        "chunks of training (and across seeds). Wall time of meta-training, peak memory and "
        "normalized test score per minute of meta-training are shown for every learner; they "
        "carry no interval and do not enter the verdict. " + CLAIM_RULE,
        comparisons,
        table=table,
    )


# -- claim 6 ----------------------------------------------------------------------------------------
TRANSFORMER, LSTM = "transformer", "blackbox"


def claim_6(ev: Evidence) -> dict[str, Any]:
    """The transformer in-context learner beats the LSTM black-box learner at the same budget."""
    comparisons = []
    for domain in ev.domains:
        registered = {n for names in ev.recipes.get(domain, {}).values() for n in names}
        missing = [n for n in (TRANSFORMER, LSTM) if n not in registered]
        if missing:
            comparisons.append(
                comparison(
                    domain,
                    "registry",
                    f"no {' and no '.join(missing)} recipe",
                    None,
                    note="not measured",
                )
            )
            continue
        for group in ev.groups():
            rows = ev.of(group)
            if domain_of(rows) != domain:
                continue
            ran = learners_of(rows)
            if TRANSFORMER not in ran or LSTM not in ran:
                comparisons.append(
                    comparison(
                        domain,
                        group,
                        "transformer or blackbox did not run",
                        None,
                        note="not measured",
                    )
                )
                continue
            costs = {c["learner"]: c for c in ev.costs if c["group"] == group}
            budgets = [
                (costs.get(n, {}).get("iterations"), costs.get(n, {}).get("meta_batch"))
                for n in (TRANSFORMER, LSTM)
            ]
            note = (
                "" if budgets[0] == budgets[1] else f"budgets differ: {budgets[0]} vs {budgets[1]}"
            )
            a = oriented(row_at(rows, TRANSFORMER, "test"))
            b = oriented(row_at(rows, LSTM, "test"))
            if a is None or b is None:
                diverged = TRANSFORMER if a is None else LSTM
                comparisons.append(
                    comparison(
                        domain,
                        group,
                        "test: transformer - blackbox",
                        None,
                        note=f"{diverged} diverged",
                        verdict=CONTRADICTED if diverged == TRANSFORMER else SUPPORTED,
                    )
                )
                continue
            comparisons.append(
                comparison(domain, group, "test: transformer - blackbox", a - b, note=note)
            )
    return _claim(
        6,
        "A better sequence model makes a better black-box learner (transformer against LSTM)",
        "per primary run where both the transformer and the LSTM (blackbox) recipes exist and "
        "ran: d = test score of transformer - test score of blackbox (higher is better; errors "
        "negated), at the report's budget (the same for both unless noted). A domain without both "
        "recipes is not measured. " + CLAIM_RULE,
        comparisons,
    )


CLAIMS = (claim_1, claim_2, claim_3, claim_4, claim_5, claim_6)


def all_claims(ev: Evidence) -> list[dict[str, Any]]:
    """Every claim's numbers and verdict."""
    return [claim(ev) for claim in CLAIMS]
