"""The six claims of the lecture's trade-off table, each turned into comparisons of measured
numbers and a verdict computed by a stated rule.

Everything here is a pure function of :class:`~metagym.report.comparisons.Evidence` (results
rows, costs, training curves and the registry), so the tests feed it constructed rows. Rows
become estimates and comparisons in :mod:`metagym.report.comparisons`, verdicts follow the rules
of :mod:`metagym.report.verdicts`; the compute-matched comparison, no claim of its own, is
:mod:`metagym.report.compute_matched`. The rules:

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
from collections.abc import Sequence
from typing import Any

from metagym.report.comparisons import (
    Evidence,
    against,
    comparison,
    domain_of,
    family_of,
    half_width,
    learned,
    learners_of,
    normalized_row,
    oriented,
    reduction,
    representative,
    row_at,
    row_diverged,
    value,
)
from metagym.report.verdicts import (
    CLAIM_RULE,
    CONTRADICTED,
    FAMILIES,
    INCONCLUSIVE,
    SUPPORTED,
    both,
    by_domain,
    claim_record,
    combine,
)
from metagym.stats import Estimate


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
    return claim_record(
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
            if drops[g] is None or drops[b] is None:
                failed = {
                    x: any(row_diverged(row_at(rows, x, s)) for s in ("test", split))
                    for x in (g, b)
                }
                comparisons.append(against(domain, group, what, {g: drops[g], b: drops[b]}, failed))
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
    return claim_record(
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
                gains[family] = (learner, None, "did not learn", False, False)
                continue
            before = error_of(row_at(by_shots[low], learner, "test"))
            after = error_of(row_at(by_shots[high], learner, "test"))
            r = None if before is None or after is None else reduction(before, after)
            bad = row_diverged(row_at(by_shots[high], learner, "test"))
            why = "" if r is not None else ("diverged" if bad else "unscored")
            ok = learned(ev, by_shots[low], domain, learner, unpaired=True)
            gains[family] = (learner, r, why, ok, bad)
        if "black-box" not in gains:
            comparisons.append(
                comparison(domain, "", "no black-box learner ran", note="not measured")
            )
            continue
        bb, r_bb, why_bb, ok_bb, bad_bb = gains["black-box"]
        for family in ("gradient", "non-parametric"):
            if family not in gains:
                continue
            learner, r, why, ok, bad = gains[family]
            what = f"K {low} -> {high}: error removed by {learner} ({family}) - by {bb} (black-box)"
            if (r is None or r_bb is None) and "did not learn" not in (why, why_bb):
                # a learner that diverged at the larger K did not scale: counts against it
                values, failed = {learner: r, bb: r_bb}, {learner: bad, bb: bad_bb}
                comparisons.append(against(domain, f"K={low},{high}", what, values, failed))
                continue
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
    return claim_record(
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
    return claim_record(
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
    ci95 = cost.get("per_update_ci95")  # None: no interval (one chunk), never an exact value
    return Estimate.independent(
        float(cost["per_update_s"]),
        math.inf if ci95 is None else float(ci95),
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
    return claim_record(
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
                failed = {x: row_diverged(row_at(rows, x, "test")) for x in (attention, recurrent)}
                comparisons.append(
                    against(domain, group, what, {attention: a, recurrent: b}, failed)
                )
                continue
            comparisons.append(comparison(domain, group, what, a, b, note=note))
    return claim_record(
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


CLAIMS = (claim_1, claim_2, claim_3, claim_4, claim_5, claim_6)


def all_claims(ev: Evidence) -> list[dict[str, Any]]:
    """Every claim's numbers and verdict."""
    return [claim(ev) for claim in CLAIMS]
