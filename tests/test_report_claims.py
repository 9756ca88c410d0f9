"""The report's verdict rules, fed constructed rows that support, contradict and do not decide
each claim (no training here)."""

import math

import pytest

from metagym.report.claims import (
    CONTRADICTED,
    INCONCLUSIVE,
    SUPPORTED,
    Evidence,
    Value,
    all_claims,
    claim_1,
    claim_2,
    claim_3,
    claim_4,
    claim_5,
    claim_6,
    combine,
    decide,
    normalized,
    ood_splits,
    reduction,
)
from metagym.report.evidence import shift_levels

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
    assert combine([SUPPORTED, CONTRADICTED]) == INCONCLUSIVE
    assert combine([]) == combine([INCONCLUSIVE]) == INCONCLUSIVE


def test_normalized_and_reduction_with_intervals():
    n = normalized(Value(0.5, 0.1), Value(3.0, 0.0), Value(0.0, 0.0))  # an MSE: lower is better
    assert n.mean == pytest.approx(2.5 / 3) and n.ci95 == pytest.approx(0.1 / 3)
    assert normalized(Value(1, 0), Value(2, 0), Value(2, 0)) is None
    r = reduction(Value(0.2, 0.0), Value(0.05, 0.01))
    assert r.mean == pytest.approx(0.75) and r.ci95 == pytest.approx(0.05)
    assert (Value(3, 0.3) - Value(1, 0.4)) == Value(2, pytest.approx(0.5))


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


def test_claim_1_reads_the_step_sweep_and_mixed_results_are_inconclusive():
    rows = _steps_rows(0.4) + _steps_rows(1.5, split="ood-phase")
    assert claim_1(evidence(rows))["verdict"] == INCONCLUSIVE
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


def test_claim_6_without_a_transformer_recipe_is_not_measured():
    claim = claim_6(evidence([row("blackbox", "test", 0.85)]))
    assert claim["verdict"] == INCONCLUSIVE
    assert all(c["note"] == "not measured" for c in claim["comparisons"])
    assert "no transformer recipe" in claim["comparisons"][0]["what"]


def test_every_claim_has_numbers_and_a_verdict_on_empty_evidence():
    claims = all_claims(evidence([]))
    assert [c["id"] for c in claims] == [1, 2, 3, 4, 5, 6]
    assert all(c["verdict"] in (SUPPORTED, CONTRADICTED, INCONCLUSIVE) for c in claims)
