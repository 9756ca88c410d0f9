"""The benchmark's floors: the counted passes of a MAML step, run with the default path's
kernels, lower-bound the step's arithmetic; FLOPs and the share of the peak in the rows."""

from __future__ import annotations

import importlib

import pytest
import torch
from torch.nn import functional as F

from benchmarks.cases import sinusoid_case
from benchmarks.floors import case_flops, count_flops, floor_passes, pass_floor
from benchmarks.harness import BenchPath, Case, Timings, summarize
from metagym.learners import MAML
from metagym.learners.maml import choose_backend
from metagym.nets import mlp
from metagym.tasks import SinusoidTasks, make_generator
from metagym.tasks.base import Examples, SupervisedTask

CPU = torch.device("cpu")


def test_passes_are_counted_per_inner_step_and_order():
    assert floor_passes(1, first_order=False) == 3
    assert floor_passes(5, first_order=False) == 11
    assert floor_passes(1, first_order=True) == 2
    assert floor_passes(0, first_order=False) == 1


def _one_pass_flops(net, loss_fn, examples: list[Examples]) -> int:
    def step():
        for e in examples:
            loss_fn(net(e.x), e.y).backward()

    return count_flops(step)


def _image_tasks(n: int, ways: int = 3) -> list[SupervisedTask]:
    g = make_generator(0)
    y = torch.arange(ways)
    return [
        SupervisedTask(
            Examples(torch.rand(ways, 1, 28, 28, generator=g), y),
            Examples(torch.rand(ways, 1, 28, 28, generator=g), y),
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_the_floor_runs_exactly_its_passes_and_bounds_the_step(kind):
    if kind == "mlp":
        net = mlp(1, [40, 40], 1)
        tasks = SinusoidTasks(10, queries=10).sample(4, "train", make_generator(0))
        loss_fn = F.mse_loss
        assert choose_backend(net, CPU) == "vmap"
    else:
        net = importlib.import_module("metagym.nets.conv4").conv4(
            1, 8, out_features=3, track_running_stats=False
        )
        tasks = _image_tasks(2)
        loss_fn = F.cross_entropy
        assert choose_backend(net, CPU) == "loop"
    for steps, first_order in ((1, False), (2, False), (1, True)):
        floor = pass_floor(net, loss_fn, tasks, CPU, steps=steps, first_order=first_order)
        passes = floor_passes(steps, first_order)
        assert floor.name == f"floor ({passes} passes)" and floor.kind == "floor"
        # support and query sets have equal sizes here: every pass costs the same
        one_pass = _one_pass_flops(net, loss_fn, [t.query for t in tasks])
        assert count_flops(floor.step) == passes * one_pass
        maml = MAML(net, loss_fn, train_steps=steps, first_order=first_order, backend="higher")
        step = count_flops(lambda m=maml: m.meta_train_step(tasks))
        assert count_flops(floor.step) <= step


def test_every_path_but_the_floor_is_credited_with_the_reference_work():
    case = sinusoid_case(CPU, steps=1, rounds=1, parity=False, peers=False)
    flops = case_flops(case)
    floor = next(p.name for p in case.paths if p.kind == "floor")
    work = {n: f for n, f in flops.items() if n != floor}
    assert len(set(work.values())) == 1 and flops[floor] < next(iter(work.values()))


def test_rows_give_gflop_and_the_share_of_the_peak():
    case = Case("c", "", [BenchPath("a", "loop", lambda: None)], rounds=1)
    times = Timings({"a": [0.5]}, {"a": [0.25]})
    (row,) = summarize(case, times, {}, flops={"a": 2 * 10**9}, peak_flops_per_s=16e9)
    assert row["gflop_per_step"] == pytest.approx(2.0)
    assert row["pct_of_peak"] == pytest.approx(100 * 2e9 / 0.25 / 16e9)  # over the CPU time
    (row,) = summarize(
        case, times, {}, cpu_time=False, flops={"a": 2 * 10**9}, peak_flops_per_s=16e9
    )
    assert row["pct_of_peak"] == pytest.approx(100 * 2e9 / 0.5 / 16e9)


def test_the_floor_table_reads_each_case_against_its_floor():
    from benchmarks.floor_table import floor_rows, format_floor_table

    def r(path, kind, ms, **extra):
        return {"case": "c", "path": path, "kind": kind, "median_cpu_ms": ms,
                "auto_path": "metagym vmap", **extra}  # fmt: skip

    results = {
        "machine": {"device": "cpu"},
        "rows": [
            r("metagym vmap", "batched", 3.0, pct_of_peak=2.0, gflop_per_step=0.01),
            r("metagym compiled", "batched", 1.0),
            r("peer", "peer", 4.5),
            r("floor (3 passes)", "floor", 1.5),
            {"case": "c", "path": "wrong", "skipped": "wrong meta-gradients"},
        ],
        "verdicts": [{"case": "c", "fastest_right_peer": "peer"}],
    }
    (row,) = floor_rows(results)
    assert row["default"] == "metagym vmap" and row["default_x_floor"] == pytest.approx(2.0)
    assert row["compiled_x_floor"] == pytest.approx(2 / 3)
    assert row["peer_x_floor"] == pytest.approx(3.0)
    assert "**2.00**" in format_floor_table([row])
