"""Paired differences to the best learner (metagym.paired) and their section in
``metagym aggregate``: built run folders, intervals by hand, the best learner computed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from metagym.aggregate import aggregate
from metagym.paired import paired_markdown, paired_table
from metagym.results import write_results
from metagym.scores import SCORES_FILE, summarize, write_scores
from metagym.stats import Z975, t_quantile

FAMILIES = {"maml": "gradient", "anil": "gradient", "blackbox": "black-box",
            "oracle": "baseline"}  # fmt: skip
N_TASKS = 40


def write_run(folder: Path, seed: int, *, scores: bool = True) -> dict[str, np.ndarray]:
    """A sinusoid run (MSE): ANIL is best of the meta-learners at its reported 5 steps (at 10
    it is worse), MAML 0.05 behind, the LSTM 1.0 behind, the oracle (a baseline) better than
    all. A shared task effect dominates every learner's spread."""
    rng = np.random.default_rng(seed)
    task = rng.gamma(2.0, 1.0, N_TASKS)

    def noisy(offset):
        return task + offset + rng.normal(0, 0.03, N_TASKS)

    table = {
        ("maml", 10): noisy(0.15),
        ("anil", 5): noisy(0.10),
        ("anil", 10): noisy(0.50),
        ("blackbox", None): noisy(1.10),
        ("oracle", None): task * 0.0 + 0.01,
    }
    rows = []
    for learner, family in FAMILIES.items():
        records = [
            {"learner": learner, "split": "test", "task": i, "steps": steps, "metric": "mse",
             "score": float(x), "diverged": False, "group": None, "env_steps": None,
             "iteration": None, "params": None}
            for (name, steps), values in table.items() if name == learner
            for i, x in enumerate(values)
        ]  # fmt: skip
        rows += [
            {"domain": "sinusoid", "learner": learner, "family": family, "shots": 5, **r}
            for r in summarize(records)
        ]
        if scores:
            write_scores(folder / "runs" / learner / SCORES_FILE, records)
    report_steps = {"maml": None, "anil": 5, "blackbox": None, "oracle": None}
    config = {"domain": "sinusoid", "families": FAMILIES, "report_steps": report_steps}
    write_results(folder / "results.json", rows, config=config, seed=seed)
    return {
        name: values for (name, steps), values in table.items() if steps != 10 or name != "anil"
    }


def _by_learner(table):
    return {r["learner"]: r for r in table}


def test_one_run_is_paired_over_its_tasks(tmp_path):
    scores = write_run(tmp_path / "s0", 0)
    table = paired_table([tmp_path / "s0"])
    rows = _by_learner(table)
    assert set(rows) == set(FAMILIES)
    assert all(r["best"] == "anil" and r["best_steps"] == 5 for r in table)  # not the oracle
    assert rows["anil"]["verdict"] == "best" and rows["anil"]["steps"] == 5
    maml = rows["maml"]
    diffs = scores["maml"] - scores["anil"]
    assert maml["difference"] == pytest.approx(diffs.mean())
    assert maml["ci95"] == pytest.approx(Z975 * diffs.std(ddof=1) / math.sqrt(N_TASKS))
    own = [Z975 * scores[n].std(ddof=1) / math.sqrt(N_TASKS) for n in ("maml", "anil")]
    assert maml["ci95_unpaired"] == pytest.approx(math.hypot(*own))
    assert maml["ci95"] < maml["ci95_unpaired"] / 5
    assert (maml["verdict"], maml["verdict_unpaired"]) == ("worse", "indistinguishable")
    assert rows["oracle"]["verdict"] == "better" and rows["blackbox"]["verdict"] == "worse"
    assert maml["pairing"] == "tasks" and maml["n_tasks"] == N_TASKS and maml["n_seeds"] == 1
    text = paired_markdown(table)
    assert text.startswith("### Paired differences to the best learner")
    assert "(best: anil at steps 5)" in text and "| maml | 10 |" in text


def test_folders_without_scores_give_an_empty_table(tmp_path):
    write_run(tmp_path / "old", 0, scores=False)
    assert paired_table([tmp_path / "old"]) == []
    assert paired_table([tmp_path / "nowhere"]) == []
    assert paired_markdown([]) == ""


def test_aggregate_writes_the_paired_section_across_seeds(tmp_path):
    scores = [write_run(tmp_path / f"s{s}", s) for s in range(3)]
    aggregate([tmp_path / f"s{s}" for s in range(3)], tmp_path / "agg")
    paired = json.loads((tmp_path / "agg" / "paired.json").read_text())
    assert paired["seeds"] == [0, 1, 2]
    rows = _by_learner(paired["rows"])
    assert rows["maml"]["best"] == "anil" and rows["maml"]["pairing"] == "seeds"
    per_seed = [(s["maml"] - s["anil"]).mean() for s in scores]
    assert rows["maml"]["difference"] == pytest.approx(np.mean(per_seed))
    by_hand = t_quantile(0.975, 2) * np.std(per_seed, ddof=1) / math.sqrt(3)
    assert rows["maml"]["ci95"] == pytest.approx(by_hand)
    means = {n: [s[n].mean() for s in scores] for n in ("maml", "anil")}
    across = [t_quantile(0.975, 2) * np.std(m, ddof=1) / math.sqrt(3) for m in means.values()]
    assert rows["maml"]["ci95_unpaired"] == pytest.approx(math.hypot(*across))
    text = (tmp_path / "agg" / "results.md").read_text()
    assert "### Paired differences to the best learner" in text
    assert "(best: anil at steps 5)" in text and "across 3 seeds" in text


def test_aggregate_of_old_folders_says_there_is_no_paired_section(tmp_path):
    for s in range(2):
        write_run(tmp_path / f"s{s}", s, scores=False)
    aggregate([tmp_path / "s0", tmp_path / "s1"], tmp_path / "agg")
    paired = json.loads((tmp_path / "agg" / "paired.json").read_text())
    assert paired["rows"] == [] and "no per-task scores" in paired["interval"]
    assert "no per-task scores" in (tmp_path / "agg" / "results.md").read_text()


def test_task_groups_get_cells_of_their_own(tmp_path):
    """Meta-World-like records: success and return, two envs; each cell has its own best."""
    config = {"families": {"maml": "gradient", "rl2": "black-box"}, "report_steps": {}}
    rows = []
    for learner, better_on, good in (("maml", "push-v3", 0.8), ("rl2", "reach-v3", 0.7)):
        records = [
            {"learner": learner, "split": "test", "task": t, "steps": None, "metric": metric,
             "score": scale * (good if env == better_on else 0.2) + 0.01 * t, "diverged": False,
             "group": env, "env_steps": None, "iteration": None, "params": None}
            for t in range(8)
            for env in ["reach-v3" if t % 2 else "push-v3"]
            for metric, scale in (("success", 1.0), ("return", 100.0))
        ]  # fmt: skip
        write_scores(tmp_path / "runs" / learner / SCORES_FILE, records)
        rows += [{"domain": "rl", "learner": learner, **r} for r in summarize(records)]
    write_results(tmp_path / "results.json", rows, config=config, seed=0)
    table = paired_table([tmp_path])
    best = {(r["metric"], r["group"]): r["best"] for r in table}
    assert best == {
        ("success", "all"): "maml",  # 0.5 against 0.45 (+ the same task effect)
        ("success", "push-v3"): "maml",
        ("success", "reach-v3"): "rl2",
        ("return", "all"): "maml",
        ("return", "push-v3"): "maml",
        ("return", "reach-v3"): "rl2",
    }
    reach = next(r for r in table if r["group"] == "reach-v3" and r["learner"] == "maml")
    assert reach["n_tasks"] == 4 and reach["difference"] == pytest.approx(-0.5)
    assert reach["ci95"] == pytest.approx(0.0, abs=1e-12)  # the same offset on every task
