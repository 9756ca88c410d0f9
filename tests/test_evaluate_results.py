import json
import math

import pytest
import torch

from metagym.evaluate import confidence_interval, evaluate
from metagym.learners.base import Learner
from metagym.plots.steps import plot_metric_vs_steps
from metagym.results import markdown_table, read_results, write_results
from metagym.tasks import SinusoidTasks, make_generator


class _Blowup(Learner):
    """Predicts zeros, then 1e4 (an MSE past the bound) at step 1, then infinity."""

    name = "blowup"
    uses_steps = True

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.optimizer = torch.optim.SGD(self.parameters(), lr=0.1)

    def meta_train_step(self, tasks):
        return {}

    def adapt(self, task, steps=None):
        scale = 0.0 if steps == 0 else (1e4 if steps == 1 else float("inf"))
        return lambda x: torch.full_like(x, scale)


def test_divergence_is_reported_with_its_step_and_json_stays_valid(tmp_path):
    distribution = SinusoidTasks(5)
    tasks = distribution.sample(5, "test", make_generator(0))
    rows = evaluate(_Blowup(), distribution, "test", tasks, steps=(0, 1, 2, 5), progress=False)
    by_step = {r["steps"]: r for r in rows}
    assert not by_step[0]["diverged"] and by_step[0]["mean"] > 0
    assert by_step[1]["diverged"] and by_step[1]["diverged_at_step"] == 1
    assert (
        by_step[5]["diverged"]
        and by_step[5]["mean"] is None
        and by_step[5]["diverged_at_step"] == 1
    )
    write_results(tmp_path / "r.json", rows, config={}, seed=0)
    json.loads((tmp_path / "r.json").read_text())  # strict JSON: no NaN/Infinity
    table = markdown_table(read_results(tmp_path / "r.json")["rows"])
    assert "diverged at step 1 (5/5 tasks)" in table
    plot_metric_vs_steps(read_results(tmp_path / "r.json"), tmp_path / "p.png")


def test_confidence_interval_is_196_std_over_sqrt_n():
    values = [1.0, 2.0, 3.0, 4.0]
    std = torch.tensor(values, dtype=torch.float64).std().item()
    assert confidence_interval(values) == pytest.approx(1.96 * std / math.sqrt(4))


def test_results_refuse_non_finite_numbers(tmp_path):
    row = {
        "domain": "d",
        "learner": "l",
        "split": "s",
        "steps": 0,
        "metric": "m",
        "mean": float("nan"),
        "ci95": 0.0,
        "n_tasks": 1,
    }
    with pytest.raises(ValueError, match="non-finite"):
        write_results(tmp_path / "r.json", [row], config={}, seed=0)


def test_evaluate_rejects_negative_steps():
    distribution = SinusoidTasks(5)
    tasks = distribution.sample(1, "test", make_generator(0))
    with pytest.raises(ValueError, match=">= 0"):
        evaluate(_Blowup(), distribution, "test", tasks, steps=(-1,), progress=False)
