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
from metagym.stats import t_quantile

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
    t = t_quantile(0.975, N_TASKS - 1)
    assert maml["ci95"] == pytest.approx(t * diffs.std(ddof=1) / math.sqrt(N_TASKS))
    own = [t * scores[n].std(ddof=1) / math.sqrt(N_TASKS) for n in ("maml", "anil")]
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
    t2 = t_quantile(0.975, 2)

    def across(per_seed_means, per_seed_tasks):
        # the spread across seeds, never below what the seeds' tasks give (the floor)
        floor = sum(np.var(x, ddof=1) / x.size for x in per_seed_tasks) / 9
        return t2 * math.sqrt(max(np.var(per_seed_means, ddof=1) / 3, floor))

    diffs = [s["maml"] - s["anil"] for s in scores]
    assert rows["maml"]["ci95"] == pytest.approx(across(per_seed, diffs))
    own = [across([s[n].mean() for s in scores], [s[n] for s in scores]) for n in ("maml", "anil")]
    assert rows["maml"]["ci95_unpaired"] == pytest.approx(math.hypot(*own))
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


def _write(folder: Path, seed: int, table: dict[str, dict[int, float]], diverged=()) -> None:
    """A run whose learners (all gradient but ``oracle``) have the given task -> MSE scores at
    one step count; learners in ``diverged`` diverged on their first task."""
    rows = []
    for learner, scores in table.items():
        records = [
            {"learner": learner, "split": "test", "task": i, "steps": 1, "metric": "mse",
             "score": x, "diverged": learner in diverged and i == min(scores), "group": None,
             "env_steps": None, "iteration": None, "params": None}
            for i, x in scores.items()
        ]  # fmt: skip
        family = "baseline" if learner == "oracle" else "gradient"
        rows += [{"domain": "sinusoid", "learner": learner, "family": family, **r}
                 for r in summarize(records)]  # fmt: skip
        write_scores(folder / "runs" / learner / SCORES_FILE, records)
    families = {n: "baseline" if n == "oracle" else "gradient" for n in table}
    write_results(folder / "results.json", rows, config={"domain": "sinusoid",
                  "families": families}, seed=seed)  # fmt: skip


def test_seeds_that_agree_by_chance_do_not_decide(tmp_path):
    # Per seed, b - a over 40 noisy tasks is 0.05 in both seeds: the spread across the two
    # seeds is 0, but each seed's difference has the noise of its tasks.
    rng = np.random.default_rng(4)
    folders = []
    for seed in range(2):
        a = rng.normal(1.0, 0.3, 40)
        noise = rng.normal(0.0, 0.3, 40)
        b = a + 0.05 + noise - noise.mean()
        folders.append(tmp_path / f"s{seed}")
        _write(folders[-1], seed, {"a": dict(enumerate(a)), "b": dict(enumerate(b))})
    row = _by_learner(paired_table(folders))["b"]
    assert row["difference"] == pytest.approx(0.05)
    floor = t_quantile(0.975, 1) * math.sqrt(2 * 0.3**2 / 40 / 4)
    assert row["ci95"] > floor / 2  # about the floor (the tasks' noise), not about zero
    assert row["verdict"] == "indistinguishable"


def test_pairing_notes_shared_tasks_and_survives_disjoint_ones(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(1.0, 0.2, 40)
    # the best (a) has tasks 0..39, b only 0..19: paired over those 20, with a note
    _write(tmp_path / "part", 0, {"a": dict(enumerate(x)), "b": dict(enumerate(x[:20] + 0.3))})
    row = _by_learner(paired_table([tmp_path / "part"]))["b"]
    assert row["n_tasks"] == 20 and row["difference"] == pytest.approx(0.3)
    assert row["note"] == "paired over the tasks both were scored on"
    # no task in common: each on its own tasks, independent, said so
    apart = {"a": dict(enumerate(x[:20])), "b": {i + 20: v + 0.3 for i, v in enumerate(x[20:])}}
    _write(tmp_path / "apart", 0, apart)
    row = _by_learner(paired_table([tmp_path / "apart"]))["b"]
    assert row["note"] == "no shared tasks: independent" and row["n_tasks"] == 0
    assert row["difference"] == pytest.approx(x[20:].mean() + 0.3 - x[:20].mean())
    # the same variance; the two keys pooled (Welch-Satterthwaite) have more df than each
    assert 0.95 * row["ci95_unpaired"] < row["ci95"] <= row["ci95_unpaired"]


def test_a_cell_where_everyone_diverged_reports_them_diverged(tmp_path):
    scores = {n: dict(enumerate(np.linspace(0.1, 0.5, 10))) for n in ("a", "b", "oracle")}
    _write(tmp_path / "all", 0, scores, diverged=("a", "b", "oracle"))
    table = paired_table([tmp_path / "all"])
    assert {r["learner"]: r["verdict"] for r in table} == dict.fromkeys(scores, "diverged")
    assert all(r["best"] is None for r in table)
    assert "every learner diverged" in paired_markdown(table)
    # the meta-learners diverged, the baseline did not: the baseline is the reference
    _write(tmp_path / "base", 0, scores, diverged=("a", "b"))
    rows = _by_learner(paired_table([tmp_path / "base"]))
    assert rows["oracle"]["verdict"] == "best" and rows["a"]["verdict"] == "diverged"
