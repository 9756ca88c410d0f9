"""The report's verdict rules, fed constructed rows that support, contradict and do not decide
each claim (no training here)."""

import math
from pathlib import Path

import numpy as np
import pytest

from metagym.report.claims import (
    all_claims,
    claim_1,
    claim_2,
    claim_3,
    claim_4,
    claim_5,
    claim_6,
    ood_splits,
)
from metagym.report.comparisons import Evidence, normalized, reduction, task_key, value
from metagym.report.evidence import shift_levels, with_units
from metagym.report.intervals import interval_summary
from metagym.report.render import comparison_table
from metagym.report.verdicts import (
    CONTRADICTED,
    INCONCLUSIVE,
    MIXED,
    SUPPORTED,
    VERDICTS,
    both,
    combine,
    decide,
)
from metagym.stats import Estimate, seeds_needed, t_quantile

OMNIGLOT_REFS = {
    "trivial": {"value": 0.2, "label": "chance"},
    "oracle": {"value": 1.0, "label": "1"},
}
SINUSOID_REFS = {
    "trivial": {"learner": "pretrain", "steps": 0, "label": "pretrain"},
    "oracle": {"learner": "oracle", "label": "oracle"},
}
RECIPES = {
    "sinusoid": {"gradient": ["maml"], "black-box": ["blackbox"], "baseline": ["oracle"]},
    "omniglot": {"gradient": ["maml"], "black-box": ["blackbox"], "non-parametric": ["protonet"]},
    "rl": {"gradient": ["maml"], "black-box": ["rl2"], "baseline": ["random"]},
}
FAMILY = {
    "maml": "gradient",
    "reptile": "gradient",
    "blackbox": "black-box",
    "transformer": "black-box",
    "rl2": "black-box",
    "protonet": "non-parametric",
    "pretrain": "baseline",
    "oracle": "baseline",
}


def row(learner, split, mean, ci=0.01, steps=None, *, domain="omniglot", group="g", **extra):
    metric = "mse" if domain == "sinusoid" else "accuracy"
    return {
        "domain": domain,
        "learner": learner,
        "family": FAMILY[learner],
        "split": split,
        "steps": steps,
        "metric": metric,
        "mean": mean,
        "ci95": ci,
        "n_tasks": 100,
        "diverged": mean is None,
        "group": group,
        "primary": True,
        "source": "main",
        **extra,
    }


def evidence(rows, **fields):
    fields.setdefault("references", {"omniglot": OMNIGLOT_REFS, "sinusoid": SINUSOID_REFS})
    fields.setdefault("recipes", RECIPES)
    return Evidence(rows=rows, **fields)


# -- the rules ---------------------------------------------------------------------------------------
def test_decide_and_combine():
    assert decide(1.0, 0.5) == SUPPORTED
    assert decide(-1.0, 0.5) == CONTRADICTED
    assert decide(0.2, 0.5) == INCONCLUSIVE
    assert decide(None, 0.1) == decide(1.0, math.nan) == INCONCLUSIVE
    assert combine([SUPPORTED, INCONCLUSIVE]) == SUPPORTED
    assert combine([CONTRADICTED, INCONCLUSIVE]) == CONTRADICTED
    assert combine([SUPPORTED, CONTRADICTED, INCONCLUSIVE]) == MIXED
    assert combine([]) == combine([INCONCLUSIVE]) == INCONCLUSIVE
    assert both(SUPPORTED, SUPPORTED) == SUPPORTED
    assert both(MIXED, CONTRADICTED) == both(SUPPORTED, CONTRADICTED) == CONTRADICTED
    assert both(SUPPORTED, MIXED) == both(MIXED, INCONCLUSIVE) == MIXED
    assert both(SUPPORTED, INCONCLUSIVE) == INCONCLUSIVE


def test_normalized_and_reduction_with_intervals():
    ind, const = Estimate.independent, Estimate.constant
    n = normalized(ind(0.5, 0.1), const(3.0), const(0.0))  # an MSE: lower is better
    assert n.mean == pytest.approx(2.5 / 3) and n.half_width() == pytest.approx(0.1 / 3)
    assert normalized(ind(1, 0), ind(2, 0), ind(2, 0)) is None
    r = reduction(const(0.2), ind(0.05, 0.01))
    assert r.mean == pytest.approx(0.75) and r.half_width() == pytest.approx(0.05)
    d = ind(3, 0.3) - ind(1, 0.4)
    assert d.mean == 2 and d.half_width() == pytest.approx(0.5) == d.unpaired
    # the same trivial row in the numerator and the denominator is one quantity (delta method)
    trivial = ind(3.0, 0.3, key="trivial")
    n = normalized(ind(1.0, 0.0), trivial, const(0.0))
    by_hand = 0.3 * abs(1.0 - 0.0) / 3.0**2  # d/dt of (s - t) / (o - t) is (s - o) / (o - t)^2
    assert n.half_width() == pytest.approx(by_hand)


def test_shift_levels_rank_mild_to_strong():
    levels = shift_levels(
        ["test", "ood-scale-0.8", "ood-scale-0.4", "ood-shear-0.6", "ood-shear-0.2", "ood-far"]
    )
    assert levels["ood-scale-0.8"] == ("scale", 1) and levels["ood-scale-0.4"] == ("scale", 2)
    assert levels["ood-shear-0.2"] == ("shear", 1) and levels["ood-shear-0.6"] == ("shear", 2)
    assert levels["ood-far"] == ("far", 1) and "test" not in levels
    sinusoid = shift_levels(["ood-phase", "ood-phase-1", "ood-phase-2", "ood-amplitude"])
    assert "ood-phase" not in sinusoid and sinusoid["ood-phase-2"] == ("phase", 2)
    assert sinusoid["ood-amplitude"] == ("amplitude", 1)
    rows = [{"split": s} for s in ("test", "ood-phase", "ood-phase-1", "ood-phase-2", "ood-x-1")]
    chosen = ood_splits(rows, shift_levels([r["split"] for r in rows]))
    assert chosen == ["ood-phase", "ood-x-1"]


# -- claim 1 -----------------------------------------------------------------------------------------
def _steps_rows(after_ten, ci=0.01, split="test"):
    return [
        row("maml", split, 0.8, ci, steps=1, domain="sinusoid"),
        row("maml", split, after_ten, ci, steps=10, domain="sinusoid"),
        row("blackbox", split, 0.6, ci, domain="sinusoid"),
    ]


@pytest.mark.parametrize(
    ("after_ten", "ci", "verdict"),
    [
        (0.4, 0.05, SUPPORTED),
        (1.2, 0.05, CONTRADICTED),
        (0.78, 0.1, INCONCLUSIVE),
        (None, 0.05, CONTRADICTED),
    ],
)
def test_claim_1(after_ten, ci, verdict):
    claim = claim_1(evidence(_steps_rows(after_ten, ci)))
    assert claim["verdict"] == verdict
    assert claim["levers"][0]["learner"] == "blackbox"
    assert "none" in claim["levers"][0]["test_time_lever"]


def test_claim_1_reads_the_step_sweep_and_mixed_results_are_mixed():
    rows = _steps_rows(0.4) + _steps_rows(1.5, split="ood-phase")
    claim = claim_1(evidence(rows))
    assert claim["verdict"] == MIXED
    assert interval_summary([claim])["decided"]["paired"]["claims"] == 0  # mixed: not decided
    main = [row("maml", "test", 0.5, steps=1), row("maml", "test", 0.6, steps=3)]
    sweep = [
        {**row("maml", "test", 0.5, steps=1), "source": "sweep"},
        {**row("maml", "test", 0.9, steps=10), "source": "sweep"},
    ]
    claim = claim_1(evidence(main + sweep))
    assert claim["verdict"] == SUPPORTED and "10 steps" in claim["comparisons"][0]["what"]


# -- claim 2 -----------------------------------------------------------------------------------------
def _shift_rows(bb_shifted, ci=0.01, grad_test=0.9):
    return [
        row("maml", "test", grad_test, ci, steps=3, report_steps=3),
        row("maml", "ood-shear-0.6", grad_test - 0.05, ci, steps=3, report_steps=3),
        row("blackbox", "test", 0.9, ci),
        row("blackbox", "ood-shear-0.6", bb_shifted, ci),
    ]


@pytest.mark.parametrize(
    ("bb_shifted", "ci", "grad_test", "verdict"),
    [
        (0.6, 0.01, 0.9, SUPPORTED),  # black-box loses 0.375 of the gap, gradient 0.0625
        (0.9, 0.01, 0.9, CONTRADICTED),  # black-box loses nothing
        (0.84, 0.2, 0.9, INCONCLUSIVE),  # within the intervals
        (0.6, 0.01, 0.2, INCONCLUSIVE),  # the gradient learner is at chance: did not learn
    ],
)
def test_claim_2(bb_shifted, ci, grad_test, verdict):
    rows = _shift_rows(bb_shifted, ci, grad_test)
    ev = evidence(rows, shifts={"omniglot": {"ood-shear-0.6": ("shear", 1)}})
    claim = claim_2(ev)
    assert claim["verdict"] == verdict, claim["comparisons"]
    assert {c["learner"] for c in claim["curves"]} == {"maml", "blackbox"}


def test_claim_2_normalizes_by_the_learned_references_of_each_split():
    def rows(bb_shift):
        return [
            row("pretrain", "test", 3.0, steps=0, domain="sinusoid"),
            row("pretrain", "ood-amplitude-1", 9.0, steps=0, domain="sinusoid"),
            row("oracle", "test", 0.0, domain="sinusoid"),
            row("oracle", "ood-amplitude-1", 0.0, domain="sinusoid"),
            row("maml", "test", 0.3, steps=10, domain="sinusoid"),
            row("maml", "ood-amplitude-1", 0.9, steps=10, domain="sinusoid"),  # keeps 0.9
            row("blackbox", "test", 0.3, domain="sinusoid"),
            row("blackbox", "ood-amplitude-1", bb_shift, domain="sinusoid"),
        ]

    shifts = {"sinusoid": {"ood-amplitude-1": ("amplitude", 1)}}
    assert claim_2(evidence(rows(4.5), shifts=shifts))["verdict"] == SUPPORTED
    # 0.9 on the shifted split is as good relative to its baseline as 0.3 on test: no drop
    assert claim_2(evidence(rows(0.3), shifts=shifts))["verdict"] == CONTRADICTED


def test_claim_2_a_diverged_row_counts_against_its_learner_a_missing_one_decides_nothing():
    shifts = {"omniglot": {"ood-shear-0.6": ("shear", 1)}}
    diverged = _shift_rows(None)  # the black-box learner diverged on the shifted split
    (c,) = claim_2(evidence(diverged, shifts=shifts))["comparisons"]
    assert (c["verdict"], c["note"]) == (SUPPORTED, "blackbox diverged")
    missing = _shift_rows(0.6)[:3]  # its shifted row is absent: unscored
    (c,) = claim_2(evidence(missing, shifts=shifts))["comparisons"]
    assert (c["verdict"], c["note"]) == (INCONCLUSIVE, "blackbox unscored")
    both = [r if r["split"] == "test" else {**r, "mean": None, "diverged": True}
            for r in _shift_rows(0.6)]  # fmt: skip
    (c,) = claim_2(evidence(both, shifts=shifts))["comparisons"]
    assert c["verdict"] == INCONCLUSIVE and "diverged" in c["note"]


# -- claim 3 -----------------------------------------------------------------------------------------
def _shots_rows(bb_five, ci=0.01):
    rows = []
    for shots, grad, bb in ((1, 0.8, 0.8), (5, 0.95, bb_five)):
        group = f"o/{shots}shot"
        rows += [
            row("maml", "test", grad, ci, steps=3, group=group, shots=shots, report_steps=3),
            row("blackbox", "test", bb, ci, group=group, shots=shots),
            row("protonet", "test", grad, ci, group=group, shots=shots),
        ]
    return rows


@pytest.mark.parametrize(
    ("bb_five", "ci", "verdict"),
    [(0.85, 0.01, SUPPORTED), (0.99, 0.005, CONTRADICTED), (0.94, 0.05, INCONCLUSIVE)],
)
def test_claim_3(bb_five, ci, verdict):
    claim = claim_3(evidence(_shots_rows(bb_five, ci)))
    assert claim["verdict"] == verdict, claim["comparisons"]
    assert len([c for c in claim["comparisons"] if c["value"] is not None]) == 2
    assert {c["shots"] for c in claim["curves"]} == {1, 5}


def test_claim_3_a_learner_that_diverges_at_more_shots_did_not_scale():
    rows = _shots_rows(None)  # the black-box learner diverged at K = 5
    claim = claim_3(evidence(rows))
    assert claim["verdict"] == SUPPORTED, claim["comparisons"]
    assert {c["note"] for c in claim["comparisons"]} == {"blackbox diverged"}
    gone = [r for r in rows if not (r["learner"] == "blackbox" and r["shots"] == 5)]
    claim = claim_3(evidence(gone))
    assert claim["verdict"] == INCONCLUSIVE
    assert {c["note"] for c in claim["comparisons"]} == {"blackbox unscored"}


def test_claim_3_without_several_shots_is_not_measured():
    claim = claim_3(evidence([row("maml", "test", 0.9, steps=1, shots=1)]))
    assert claim["verdict"] == INCONCLUSIVE
    assert claim["comparisons"][0]["note"] == "not measured"


# -- claim 4 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("protonet", "ci", "verdict"),
    [(0.97, 0.01, SUPPORTED), (0.8, 0.01, CONTRADICTED), (0.91, 0.05, INCONCLUSIVE)],
)
def test_claim_4(protonet, ci, verdict):
    rows = [
        row("protonet", "test", protonet, ci),
        row("maml", "test", 0.9, ci, steps=3),
        row("blackbox", "test", 0.85 if verdict != SUPPORTED else 0.9, ci),
    ]
    claim = claim_4(evidence(rows))
    assert claim["verdict"] == verdict, claim["comparisons"]
    assert claim["parts"]["applicability"] == SUPPORTED
    cells = {(m["domain"], m["family"]): m["status"] for m in claim["matrix"]}
    assert cells[("sinusoid", "non-parametric")] == "no recipe"
    assert cells[("omniglot", "non-parametric")] == "ran"
    assert cells[("rl", "gradient")] == "registered, not run"


def test_claim_4_a_non_parametric_regression_recipe_contradicts():
    recipes = {**RECIPES, "sinusoid": {**RECIPES["sinusoid"], "non-parametric": ["knn"]}}
    rows = [row("protonet", "test", 0.97), row("maml", "test", 0.9, steps=3)]
    claim = claim_4(evidence(rows, recipes=recipes))
    assert claim["parts"]["applicability"] == CONTRADICTED and claim["verdict"] == CONTRADICTED


# -- claim 5 -----------------------------------------------------------------------------------------
def _cost(learner, per_update, ci):
    return {
        "learner": learner,
        "family": FAMILY[learner],
        "group": "g",
        "domain": "omniglot",
        "iterations": 100,
        "meta_batch": 8,
        "train_s": per_update * 100,
        "per_update_s": per_update,
        "per_update_ci95": ci,
        "growth_mb": 10.0,
        "peak_mb": 400.0,
    }


@pytest.mark.parametrize(
    ("maml", "ci", "verdict"),
    [(0.5, 0.01, SUPPORTED), (0.05, 0.01, CONTRADICTED), (0.11, 0.05, INCONCLUSIVE)],
)
def test_claim_5(maml, ci, verdict):
    rows = [
        row("maml", "test", 0.9, steps=3),
        row("blackbox", "test", 0.8),
        row("protonet", "test", 0.95),
    ]
    costs = [_cost("maml", maml, ci), _cost("blackbox", 0.1, ci), _cost("protonet", 0.1, ci)]
    claim = claim_5(evidence(rows, costs=costs))
    assert claim["verdict"] == verdict, claim["comparisons"]
    assert len(claim["comparisons"]) == 2
    assert {t["learner"] for t in claim["table"]} == {"maml", "blackbox", "protonet"}
    per_minute = next(t for t in claim["table"] if t["learner"] == "protonet")
    assert per_minute["normalized_per_minute"] == pytest.approx((0.75 / 0.8) / (10 / 60))


# -- claim 6 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("transformer", "ci", "verdict"),
    [(0.95, 0.01, SUPPORTED), (0.7, 0.01, CONTRADICTED), (0.86, 0.05, INCONCLUSIVE)],
)
def test_claim_6(transformer, ci, verdict):
    recipes = {**RECIPES, "omniglot": {"black-box": ["blackbox", "transformer"]}}
    rows = [row("transformer", "test", transformer, ci), row("blackbox", "test", 0.85, ci)]
    claim = claim_6(evidence(rows, recipes=recipes))
    assert claim["verdict"] == verdict, claim["comparisons"]
    assert {c["note"] for c in claim["comparisons"] if c["domain"] != "omniglot"} == {
        "not measured"
    }


def test_claim_6_when_both_diverged_decides_nothing():
    recipes = {**RECIPES, "omniglot": {"black-box": ["blackbox", "transformer"]}}
    one = [row("transformer", "test", None), row("blackbox", "test", 0.85)]
    (c,) = [c for c in claim_6(evidence(one, recipes=recipes))["comparisons"] if c["group"] == "g"]
    assert (c["verdict"], c["note"]) == (CONTRADICTED, "transformer diverged")
    both = [row("transformer", "test", None), row("blackbox", "test", None)]
    (c,) = [c for c in claim_6(evidence(both, recipes=recipes))["comparisons"] if c["group"] == "g"]
    assert c["verdict"] == INCONCLUSIVE
    assert c["note"] == "transformer diverged; blackbox diverged"


def test_claim_6_without_a_transformer_recipe_is_not_measured():
    claim = claim_6(evidence([row("blackbox", "test", 0.85)]))
    assert claim["verdict"] == INCONCLUSIVE
    assert all(c["note"] == "not measured" for c in claim["comparisons"])
    assert "no transformer recipe" in claim["comparisons"][0]["what"]


def test_claim_6_compares_rl2s_gru_with_the_transformer_by_the_recipes_sequence_models():
    rows = [
        {**row("transformer", "test", -3.0, 0.2, steps=1, domain="rl"), "metric": "return"},
        {**row("rl2", "test", -4.0, 0.2, steps=1, domain="rl"), "metric": "return"},
        {**row("blackbox", "test", -9.0, 0.2, domain="rl"), "metric": "return"},  # not compared
    ]
    recipes = {"rl": {"black-box": ["rl2", "transformer"]}}
    models = {"rl": {"rl2": "gru", "transformer": "transformer"}}
    ev = evidence(rows, recipes=recipes, sequence_models=models, domains=("rl",))
    claim = claim_6(ev)
    (only,) = claim["comparisons"]
    assert only["what"] == "test: transformer - rl2" and only["verdict"] == SUPPORTED
    assert only["value"] == pytest.approx(1.0)
    # without a recurrent recipe the domain is not measured, whatever the learners' names
    claim = claim_6(evidence(rows, recipes=recipes, sequence_models={"rl": {}}, domains=("rl",)))
    assert claim["comparisons"][0]["note"] == "not measured"
    assert "no transformer and no recurrent (LSTM or GRU) recipe" in claim["comparisons"][0]["what"]


def test_every_claim_has_numbers_and_a_verdict_on_empty_evidence():
    claims = all_claims(evidence([]))
    assert [c["id"] for c in claims] == [1, 2, 3, 4, 5, 6]
    assert all(c["verdict"] in (SUPPORTED, CONTRADICTED, INCONCLUSIVE) for c in claims)


# -- paired comparisons ----------------------------------------------------------------------------
def units_row(learner, split, scores, steps=None, *, domain="sinusoid", group="g", **extra):
    """A row whose units are per-task scores of ``group``'s ``split`` (tasks 0..n-1)."""
    scores = np.asarray(scores, dtype=float)
    t = t_quantile(0.975, scores.size - 1)
    mean, ci = float(scores.mean()), float(t * scores.std(ddof=1) / math.sqrt(scores.size))
    key = task_key(group, 0, split, None, list(range(scores.size)))
    return row(
        learner, split, mean, ci, steps, domain=domain, group=group,
        units=scores.tolist(), unit_key=key, **extra,
    )  # fmt: skip


def _task_effect_rows(gain, n=200, seed=0):
    """MAML's MSE after 1 and after 10 steps on the same tasks: a large task effect both share,
    a small per-task noise, and a mean gain of ``gain`` (lower MSE after 10 steps)."""
    rng = np.random.default_rng(seed)
    task = rng.gamma(2.0, 1.0, n)  # how hard each task is, for every learner and step count
    one = task + rng.normal(0, 0.05, n)
    many = task - gain + rng.normal(0, 0.05, n)
    rows = [
        units_row("maml", "test", one, steps=1),
        units_row("maml", "test", many, steps=10),
        row("blackbox", "test", 0.6, domain="sinusoid"),
    ]
    return rows, -(many - one)  # the oriented per-task differences


def test_paired_interval_is_narrower_than_the_unpaired_one_with_task_effects():
    rows, diffs = _task_effect_rows(gain=0.05)
    claim = claim_1(evidence(rows))
    (c,) = claim["comparisons"]
    by_hand = t_quantile(0.975, diffs.size - 1) * diffs.std(ddof=1) / math.sqrt(diffs.size)
    assert c["value"] == pytest.approx(diffs.mean())
    assert c["ci95"] == pytest.approx(by_hand)
    assert c["ci95_unpaired"] == pytest.approx(math.hypot(rows[0]["ci95"], rows[1]["ci95"]))
    assert c["ci95"] < c["ci95_unpaired"] / 5
    assert c["paired"] and c["pairing"] == "tasks"
    assert c["effect_size"] == pytest.approx(diffs.mean() / diffs.std(ddof=1))
    assert (c["verdict"], c["verdict_unpaired"]) == (SUPPORTED, INCONCLUSIVE)
    assert (claim["verdict"], claim["verdict_unpaired"]) == (SUPPORTED, INCONCLUSIVE)
    assert claim["domains"]["sinusoid"]["verdict"] == SUPPORTED
    summary = interval_summary([claim])
    assert summary["median_ci95"] == pytest.approx(c["ci95"])
    assert summary["ratio_of_medians"] < 0.2 and summary["n_paired"] == 1
    assert summary["decided"]["paired"]["claims"] == 1
    assert summary["decided"]["unpaired"]["claims"] == 0
    (part,) = summary["by_claim_domain"]
    assert (part["claim"], part["domain"], part["n_comparisons"]) == (1, "sinusoid", 1)
    assert part["median_ratio"] == pytest.approx(c["ci95"] / c["ci95_unpaired"])


def test_rows_of_different_tasks_do_not_pair():
    rows, _ = _task_effect_rows(gain=0.05)
    rows[1] = {**rows[1], "unit_key": task_key("other run", 0, "test", None, range(200))}
    (c,) = claim_1(evidence(rows))["comparisons"]
    assert not c["paired"] and c["pairing"] == "independent: different units"
    # the same variance; the quantile of the two keys' pooled df (Welch-Satterthwaite) is a
    # little below each one's own t(199)
    assert c["ci95"] == pytest.approx(c["ci95_unpaired"], rel=5e-3)
    assert c["ci95"] <= c["ci95_unpaired"]


def test_inconclusive_comparisons_say_how_many_tasks_would_decide():
    rows, diffs = _task_effect_rows(gain=0.004)
    claim = claim_1(evidence(rows))
    (c,) = claim["comparisons"]
    assert c["verdict"] == INCONCLUSIVE and c["seeds_needed"] is None
    k, sd = c["tasks_needed"], diffs.std(ddof=1)
    assert k > diffs.size
    # 80% power: the paired test's interval at k tasks, with its t quantile
    z = lambda m: t_quantile(0.975, m - 1) + t_quantile(0.8, m - 1)  # noqa: E731
    assert z(k) * sd / math.sqrt(k) <= abs(diffs.mean()) < z(k - 1) * sd / math.sqrt(k - 1)
    table = comparison_table(claim["comparisons"])[1][1]
    assert f"{k:,} tasks" in table[0]
    decided = claim_1(evidence(_task_effect_rows(gain=0.05)[0]))["comparisons"][0]
    assert decided["tasks_needed"] is None


def test_the_seed_is_the_unit_with_several_seeds():
    per_seed = {"transformer": [0.50, 0.645, 0.40], "blackbox": [0.45, 0.60, 0.35]}  # accuracy
    raw = []  # rows as aggregate_rows gives them: no evidence group yet
    for learner, means in per_seed.items():
        r = row(learner, "test", float(np.mean(means)), 0.2, seed_means=means)
        raw.append({k: v for k, v in r.items() if k != "group"})
    with_seeds, missing = with_units(raw, "g", [Path("s0"), Path("s1"), Path("s2")], [0, 1, 2])
    assert missing == [] and all(r["seed_level"] for r in with_seeds)
    recipes = {**RECIPES, "omniglot": {"black-box": ["blackbox", "transformer"]}}
    claim = claim_6(evidence([{**r, "group": "g"} for r in with_seeds], recipes=recipes))
    c = next(c for c in claim["comparisons"] if c["domain"] == "omniglot")
    diffs = np.subtract(per_seed["transformer"], per_seed["blackbox"])  # 0.05, 0.045, 0.05
    by_hand = t_quantile(0.975, 2) * diffs.std(ddof=1) / math.sqrt(3)
    assert c["value"] == pytest.approx(diffs.mean()) and c["pairing"] == "seeds"
    assert c["ci95"] == pytest.approx(by_hand)
    across = [t_quantile(0.975, 2) * np.std(m, ddof=1) / math.sqrt(3) for m in per_seed.values()]
    assert c["ci95_unpaired"] == pytest.approx(math.hypot(*across))  # each row's across seeds
    assert c["effect_size"] == pytest.approx(diffs.mean() / diffs.std(ddof=1))
    assert c["verdict"] == SUPPORTED and c["verdict_unpaired"] == INCONCLUSIVE
    # a smaller per-seed gain is not decided at 3 seeds: the seeds it would need, no tasks
    flat = {**per_seed, "transformer": [0.47, 0.58, 0.40]}
    raw = [{**r, "mean": float(np.mean(flat[r["learner"]])), "seed_means": flat[r["learner"]]}
           for r in raw]  # fmt: skip
    with_seeds, _ = with_units(raw, "g", [Path("s0"), Path("s1"), Path("s2")], [0, 1, 2])
    claim = claim_6(evidence([{**r, "group": "g"} for r in with_seeds], recipes=recipes))
    c = next(c for c in claim["comparisons"] if c["domain"] == "omniglot")
    diffs = np.subtract(flat["transformer"], flat["blackbox"])
    assert c["verdict"] == INCONCLUSIVE and c["tasks_needed"] is None
    assert c["seeds_needed"] == seeds_needed(diffs) and c["seeds_needed"] > 3


def test_per_domain_verdicts():
    recipes = {
        **RECIPES,
        "omniglot": {"black-box": ["blackbox", "transformer"]},
        "sinusoid": {"black-box": ["blackbox", "transformer"]},
    }
    rows = [
        row("transformer", "test", 0.2, 0.01, domain="sinusoid", group="s"),  # lower MSE: better
        row("blackbox", "test", 0.5, 0.01, domain="sinusoid", group="s"),
        row("transformer", "test", 0.7, 0.01, group="o"),  # lower accuracy: worse
        row("blackbox", "test", 0.85, 0.01, group="o"),
    ]
    claim = claim_6(evidence(rows, recipes=recipes))
    assert claim["verdict"] == MIXED  # one domain supports, one contradicts
    assert claim["domains"]["sinusoid"]["verdict"] == SUPPORTED
    assert claim["domains"]["omniglot"]["verdict"] == CONTRADICTED
    assert claim["domains"]["omniglot"]["counts"][CONTRADICTED] == 1
    assert claim["domains"]["rl"]["verdict"] == INCONCLUSIVE  # not measured
    four = claim_4(
        evidence([row("protonet", "test", 0.6, 0.01), row("maml", "test", 0.9, 0.01, steps=3)])
    )
    assert four["domains"]["omniglot"]["verdict"] == CONTRADICTED  # applies, but weaker
    assert "both parts" in four["domains"]["omniglot"]["rule"]
    assert four["domains"]["sinusoid"]["verdict"] == SUPPORTED  # no recipe, as claimed
    assert "applicability only" in four["domains"]["sinusoid"]["rule"]
    summary = interval_summary([claim, four])
    assert summary["n_claim_domains"] == 6
    assert summary["decided"]["paired"]["claim_domains"] == 5  # all but claim 6 on rl
    parts = {(p["claim"], p["domain"]): p for p in summary["by_claim_domain"]}
    assert set(parts) == {(6, "sinusoid"), (6, "omniglot"), (4, "omniglot")}  # with intervals
    strength = [c for c in four["comparisons"] if c["ci95"] is not None]
    assert parts[4, "omniglot"]["n_comparisons"] == len(strength)
    assert parts[4, "omniglot"]["median_ci95"] == pytest.approx(
        float(np.median([c["ci95"] for c in strength]))
    )


def _metaworld_rows():
    """ML10-like rows: success and return, over all envs and per env, test and held-out envs.
    Returns and per-env rows say the opposite of the success over all envs: reading them would
    flip or double the comparisons."""
    rows = []

    def add(learner, split, steps, success, returns, per_env):
        base = {"domain": "rl", "group": "ml10", "env": "metaworld/ML10", "report_steps": 3}
        for env in ("reach-v3", "push-v3"):  # first, so that reading rows in order would fail
            rows.append({**row(learner, split, per_env, 0.01, steps, **base), "metric": "success",
                         "task_group": env})  # fmt: skip
        for metric, mean in (("return", returns), ("success", success)):
            rows.append({**row(learner, split, mean, 0.01, steps, **base), "metric": metric,
                         "task_group": "all"})  # fmt: skip

    FAMILY.update(rl2="black-box", random="baseline")
    for split, held in (("test", 0), ("ood-heldout", 1)):
        add("maml", split, 1, 0.30 - 0.05 * held, 900.0, 0.9)
        add("maml", split, 3, 0.60 - 0.05 * held, 100.0, 0.1)
        add("rl2", split, None, 0.60 - 0.4 * held, 500.0, 0.5)
        add("random", split, None, 0.0, -10.0, 0.0)
        add("oracle", split, None, 1.0, 1000.0, 1.0)
    return rows


def test_metaworld_rows_enter_claims_1_and_2_once_by_success_rate():
    rows = _metaworld_rows()
    ev = evidence(
        rows,
        references={"rl": {"trivial": {"learner": "random"}, "oracle": {"learner": "oracle"}}},
        shifts={"rl": shift_levels([r["split"] for r in rows])},
    )
    one = claim_1(ev)
    assert [c["what"].split(":")[0] for c in one["comparisons"]] == [
        "maml on test", "maml on ood-heldout"
    ]  # fmt: skip
    assert [c["value"] for c in one["comparisons"]] == pytest.approx([0.3, 0.3])
    assert one["verdict"] == SUPPORTED and one["domains"]["rl"]["verdict"] == SUPPORTED
    two = claim_2(ev)
    (c,) = two["comparisons"]
    assert "ood-heldout" in c["what"] and c["value"] == pytest.approx(0.4 - 0.05)
    assert two["verdict"] == SUPPORTED
    assert {x["split"] for x in two["curves"]} == {"test", "ood-heldout"}
    assert len(two["curves"]) == 4  # two learners x two splits, success over all envs only
    assert all(c["verdict"] in VERDICTS for claim in all_claims(ev) for c in claim["comparisons"])


def test_an_old_row_without_an_interval_is_never_exact():
    one_task = value(row("maml", "test", 0.9, 0.0, n_tasks=1))
    assert math.isinf(one_task.half_width())
    assert math.isinf(value(row("maml", "test", 0.9, None)).half_width())
    assert value(row("maml", "test", 0.9, 0.05)).half_width() == pytest.approx(0.05)
    # a comparison with it decides nothing
    recipes = {**RECIPES, "omniglot": {"black-box": ["blackbox", "transformer"]}}
    rows = [row("transformer", "test", 0.95, 0.0, n_tasks=1), row("blackbox", "test", 0.5)]
    (c,) = [c for c in claim_6(evidence(rows, recipes=recipes))["comparisons"] if c["group"] == "g"]
    assert c["value"] == pytest.approx(0.45)
    assert c["verdict"] == INCONCLUSIVE and c["ci95"] is None
