"""The report's evidence from run folders built here (no training): rows paired on the per-task
scores of their scores files, old folders without them on the independent rule, the seed as the
unit with several seeds, and the compute-matched comparison from metrics.csv."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from metagym.report.claims import all_claims, claim_1, claim_5, claim_6
from metagym.report.compute_matched import compute_matched
from metagym.report.evidence import gather, with_units
from metagym.report.render import document, to_markdown
from metagym.report.verdicts import INCONCLUSIVE, SUPPORTED
from metagym.results import write_results
from metagym.scores import SCORES_FILE, summarize, write_scores
from metagym.stats import t_quantile

FAMILIES = {"maml": "gradient", "reptile": "gradient", "blackbox": "black-box",
            "transformer": "black-box"}  # fmt: skip
EXPERIMENT = SimpleNamespace(name="sinusoid-k5", domain="sinusoid", primary=True)
N_TASKS = 30


def _records(learner, split, steps, scores):
    return [
        {"learner": learner, "split": split, "task": i, "steps": steps, "metric": "mse",
         "score": float(s), "diverged": False, "group": None, "env_steps": None,
         "iteration": None, "params": None}
        for i, s in enumerate(scores)
    ]  # fmt: skip


def _metrics(path: Path, column: str, points) -> None:
    """``metrics.csv`` with (iteration, iterations per second, loss) points."""
    lines = [f"iteration,{column},charts/iterations_per_second"]
    lines += [f"{it},{loss},{rate}" for it, rate, loss in points]
    path.write_text("\n".join(lines) + "\n")


def write_run(folder: Path, seed: int, *, shift: float = 0.0, sweep: bool = False) -> dict:
    """A sinusoid run folder: a large task effect every learner shares; the transformer beats
    the LSTM by 0.05 MSE per task (+ noise), MAML gains 0.1 from 1 to 10 steps. Returns the
    per-learner test scores."""
    rng = np.random.default_rng(seed)
    task = rng.gamma(2.0, 1.0, N_TASKS)
    noise = lambda: rng.normal(0, 0.02, N_TASKS)  # noqa: E731
    scores = {
        ("maml", 1): task + 0.3 + noise(),
        ("maml", 10): task + 0.2 + shift + noise(),
        ("reptile", 1): task + 0.4 + noise(),
        ("reptile", 10): task + 0.4 + noise(),
        ("blackbox", None): task + 0.25 + noise(),
        ("transformer", None): task + 0.20 - shift + noise(),
    }
    rows, sweep_rows = [], []
    for learner in FAMILIES:
        records = [r for (n, steps), s in scores.items() if n == learner
                   for r in _records(learner, "test", steps, s)]  # fmt: skip
        fields = {"domain": "sinusoid", "learner": learner, "family": FAMILIES[learner],
                  "shots": 5}  # fmt: skip
        rows += [{**fields, **r} for r in summarize(records)]
        write_scores(folder / "runs" / learner / SCORES_FILE, records)
        if sweep and learner == "maml":  # the step sweep: the first 4 tasks of the stream
            prefix = [r for r in records if r["task"] < 4]
            sweep_rows += [{**fields, **r} for r in summarize(prefix)]
            write_scores(folder / "runs" / learner / f"sweep_{SCORES_FILE}", prefix)
    # MAML: 10 meta-updates per second; black-box: 100 (seconds 1, 2, ...); reptile: no query loss
    _metrics(folder / "runs/maml/metrics.csv", "losses/query_after_adaptation",
             [(10, 10.0, 1.0), (20, 10.0, 0.8 - shift), (30, 10.0, 0.6)])  # fmt: skip
    _metrics(folder / "runs/blackbox/metrics.csv", "losses/query",
             [(100, 100.0, 0.9), (200, 100.0, 0.85)])  # fmt: skip
    _metrics(folder / "runs/transformer/metrics.csv", "losses/query",
             [(100, 100.0, 0.95), (200, 100.0, 0.9)])  # fmt: skip
    _metrics(folder / "runs/reptile/metrics.csv", "losses/support_before_adaptation",
             [(10, 5.0, 2.0)])  # fmt: skip
    config = {
        "families": FAMILIES,
        "report_steps": dict.fromkeys(FAMILIES),
        "iterations": dict.fromkeys(FAMILIES, 30),
        "meta_batch": dict.fromkeys(FAMILIES, 4),
        "timings": {n: {"train_s": 3.0, "eval_s": 1.0} for n in FAMILIES},
    }
    write_results(folder / "results.json", rows, config=config, seed=seed)
    if sweep:
        write_results(folder / "steps_sweep.json", sweep_rows, config=config, seed=seed)
    return scores


def _gather(folders):
    return gather([EXPERIMENT], {EXPERIMENT.name: list(folders)}, ("sinusoid",))


def _claim_6(ev):
    return next(c for c in claim_6(ev)["comparisons"] if c["value"] is not None)


def test_rows_pair_on_the_tasks_of_their_scores_files(tmp_path):
    scores = write_run(tmp_path / "s0", 0, sweep=True)
    ev = _gather([tmp_path / "s0"])
    assert ev.notes == []
    c = _claim_6(ev)
    diffs = scores[("blackbox", None)] - scores[("transformer", None)]  # MSE: lower is better
    assert c["value"] == pytest.approx(diffs.mean()) and c["pairing"] == "tasks"
    t = t_quantile(0.975, N_TASKS - 1)
    assert c["ci95"] == pytest.approx(t * diffs.std(ddof=1) / math.sqrt(N_TASKS))
    assert c["ci95"] < c["ci95_unpaired"] / 5
    assert (c["verdict"], c["verdict_unpaired"]) == (SUPPORTED, INCONCLUSIVE)
    # claim 1 reads MAML's step sweep: 4 tasks of its own, paired with each other
    one = claim_1(ev)["comparisons"]
    (sweep,) = [c for c in one if c["what"].startswith("maml") and "step sweep" in c["what"]]
    gain = scores[("maml", 1)][:4] - scores[("maml", 10)][:4]
    assert sweep["value"] == pytest.approx(gain.mean()) and sweep["pairing"] == "tasks"
    assert sweep["ci95"] == pytest.approx(t_quantile(0.975, 3) * gain.std(ddof=1) / 2)
    # the chunks of training are a unit of their own: two learners' chunks never pair
    five = claim_5(ev)["comparisons"]
    assert five and all(c["pairing"] == "independent: different units" for c in five)
    assert next(c for c in ev.costs if c["learner"] == "maml")["per_update_s"] == pytest.approx(0.1)


def test_old_folders_without_scores_use_the_independent_rule_and_say_so(tmp_path):
    write_run(tmp_path / "s0", 0)
    for path in (tmp_path / "s0").glob(f"runs/*/{SCORES_FILE}"):
        path.unlink()
    ev = _gather([tmp_path / "s0"])
    assert len(ev.notes) == 1 and "no per-task scores" in ev.notes[0]
    assert "blackbox" in ev.notes[0] and "independent rule" in ev.notes[0]
    claims = all_claims(ev)
    compared = [c for claim in claims for c in claim["comparisons"] if c["ci95"] is not None]
    assert compared
    for c in compared:
        assert c["ci95"] == pytest.approx(c["ci95_unpaired"], rel=1e-9), c["what"]
        assert c["verdict"] == c["verdict_unpaired"] and not c["paired"]
    assert _claim_6(ev)["pairing"] == "independent: no per-task scores"
    meta = {"profile": "t", "command": "c", "commit": "x", "created": "d", "machine": "m",
            "seeds": [0], "wall_s": 1.0, "conventions": "", "parts_columns": ["a"], "parts": [],
            "budget_note": "", "notes": ev.notes}  # fmt: skip
    text = to_markdown(document(meta, claims))
    assert "Note: sinusoid-k5: no per-task scores" in text
    assert "independent: no per-task scores" in text


def test_with_seeds_the_seed_is_the_unit(tmp_path):
    shifts = (0.0, 0.01, -0.012)
    scores = [write_run(tmp_path / f"s{s}", s, shift=x) for s, x in enumerate(shifts)]
    ev = _gather([tmp_path / f"s{s}" for s in range(3)])
    c = _claim_6(ev)
    per_seed = [(s[("blackbox", None)] - s[("transformer", None)]).mean() for s in scores]
    assert c["value"] == pytest.approx(np.mean(per_seed)) and c["pairing"] == "seeds"
    by_hand = t_quantile(0.975, 2) * np.std(per_seed, ddof=1) / math.sqrt(3)
    assert c["ci95"] == pytest.approx(by_hand)
    assert c["tasks_needed"] is None
    # costs with seeds: per-seed means, paired seed by seed
    five = claim_5(ev)["comparisons"]
    assert all(c["pairing"] == "seeds" for c in five)


def test_compute_matched_compares_losses_at_the_shorter_training_time(tmp_path):
    write_run(tmp_path / "s0", 0)
    section = compute_matched(_gather([tmp_path / "s0"]))
    (pair,) = section["pairs"]  # the black-box representative: the transformer (lower MSE)
    assert (pair["gradient"], pair["other"]) == ("maml", "transformer")
    assert pair["seconds"] == pytest.approx([2.0])  # the transformer trained 2 s, MAML 3 s
    assert pair["loss_gradient"] == [0.8] and pair["loss_other"] == [0.9]
    (c,) = section["comparisons"]
    assert c["value"] == pytest.approx(0.1) and c["verdict"] is None and c["ci95"] is None
    assert c["note"] == "one seed: no interval" and section["verdict"] is None
    assert [x["learner"] for x in section["skipped"]] == ["reptile"]
    # three seeds: an interval across seeds, and a verdict
    for s, x in enumerate((0.0, 0.02, -0.03)):
        write_run(tmp_path / f"m{s}", s, shift=x)
    section = compute_matched(_gather([tmp_path / f"m{s}" for s in range(3)]))
    (c,) = section["comparisons"]
    per_seed = np.array([0.9 - (0.8 - x) for x in (0.0, 0.02, -0.03)])
    assert c["value"] == pytest.approx(per_seed.mean())
    assert c["ci95"] == pytest.approx(t_quantile(0.975, 2) * per_seed.std(ddof=1) / math.sqrt(3))
    assert c["verdict"] == SUPPORTED and section["verdict"] == SUPPORTED
    assert section["domains"]["sinusoid"]["verdict"] == SUPPORTED


def test_compute_matched_pairs_seed_by_seed_when_a_curve_is_missing(tmp_path):
    shifts = (0.0, 0.02, -0.03)
    for s, x in enumerate(shifts):
        write_run(tmp_path / f"m{s}", s, shift=x)
    (tmp_path / "m1" / "runs" / "transformer" / "metrics.csv").unlink()
    section = compute_matched(_gather([tmp_path / f"m{s}" for s in range(3)]))
    (pair,) = section["pairs"]
    assert pair["seeds"] == [0, 2]
    assert pair["loss_gradient"] == pytest.approx([0.8 - x for x in (0.0, -0.03)])
    (c,) = section["comparisons"]
    assert c["value"] == pytest.approx(np.mean([0.9 - (0.8 - x) for x in (0.0, -0.03)]))
    assert "seeds [1] left out" in c["note"]


def _metaworld_records(learner, offset):
    return [
        {"learner": learner, "split": "test", "task": t, "steps": 1, "metric": metric,
         "score": (t / 10 + offset) * scale, "diverged": False,
         "group": "reach-v3" if t % 2 else "push-v3", "env_steps": None, "iteration": None,
         "params": None}
        for t in range(6)
        for metric, scale in (("success", 1.0), ("return", 100.0))
    ]  # fmt: skip


def test_metaworld_rows_get_the_tasks_of_their_env_group(tmp_path):
    records = _metaworld_records("maml", 0.0)
    write_scores(tmp_path / "runs/maml" / SCORES_FILE, records)
    rows = [{"domain": "rl", "learner": "maml", **r} for r in summarize(records)]
    out, missing = with_units(rows, "ml10", [tmp_path], [0])
    assert missing == []
    units = {(r["task_group"], r["metric"]): r["units"] for r in out}
    assert units[("all", "success")] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert units[("push-v3", "success")] == pytest.approx([0.0, 0.2, 0.4])
    assert units[("reach-v3", "return")] == pytest.approx([10.0, 30.0, 50.0])
    keys = {(r["task_group"], r["metric"]): r["unit_key"] for r in out}
    assert keys[("all", "success")] == keys[("all", "return")]  # the same tasks
    assert keys[("push-v3", "success")] != keys[("reach-v3", "success")]
