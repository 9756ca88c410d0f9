"""The benchmark's peer paths: skipped with the reason without the bench extra, checked before
timed (a path with wrong meta-gradients is marked wrong), and the auto-backend verdict."""

from __future__ import annotations

import pytest
import torch

from benchmarks import peers
from benchmarks.cases import conv4_maml_case, sinusoid_case
from benchmarks.harness import Case, Timings, auto_verdict, summarize


def test_without_the_bench_extra_peers_are_skipped_with_the_reason(monkeypatch):
    real = peers.importlib.import_module

    def no_peers(name, *args, **kwargs):
        if name.split(".")[0] in ("torchopt", "metalearn"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(peers.importlib, "import_module", no_peers)
    case = sinusoid_case(torch.device("cpu"), steps=1, rounds=1, parity=False)
    names = [p.name for p in case.paths]
    assert names == [
        "metagym higher",
        "metagym loop",
        "metagym vmap",
        "metagym compiled",
        "higher example loop",
        "floor (3 passes)",
    ]
    for peer in ("TorchOpt MetaSGD loop", "TorchOpt vmap recipe", "parallel-metalearn vmap"):
        assert 'pip install -e ".[bench]"' in case.skipped[peer]
        assert "not importable" in case.skipped[peer]


def test_wrong_meta_gradients_are_marked_not_timed():
    """TorchOpt's vmap recipe with torch's BatchNorm: wrong second-order meta-gradients."""
    pytest.importorskip("torchopt")
    pytest.importorskip("metalearn")
    case = conv4_maml_case(torch.device("cpu"), rounds=1, peers=True, hidden=8)
    timed = {p.name for p in case.paths}
    assert "TorchOpt vmap recipe" not in timed
    assert case.skipped["TorchOpt vmap recipe"].startswith("wrong meta-gradients")
    differences = case.extra["meta_grad_rel_diff"]
    assert differences["TorchOpt vmap recipe"] > 1e-4
    for name in (
        "metagym vmap",
        "metagym loop",
        "TorchOpt MetaSGD loop",
        "parallel-metalearn vmap",
    ):
        assert name in timed and differences[name] < 1e-6, name


def test_auto_verdict_compares_the_default_with_the_measured_paths():
    case = Case("c", "", [], rounds=1, extra={"auto_path": "metagym higher"})
    names = {
        "metagym higher": "loop",
        "metagym vmap": "batched",
        "peer A": "peer",
        "peer B": "peer",
    }
    case.paths = [peers_path(n, k) for n, k in names.items()]
    cpu = {"metagym higher": [2.0], "metagym vmap": [1.0], "peer A": [3.0], "peer B": [4.0]}
    rows = summarize(case, Timings(cpu, cpu), {})
    verdict = auto_verdict(case, rows, cpu_time=True)
    assert verdict["faster_metagym_path"] == "metagym vmap"
    assert verdict["auto_matches_faster"] is False
    assert verdict["fastest_right_peer"] == "peer A"
    assert verdict["default_vs_fastest_peer"] == pytest.approx(1.5)


def peers_path(name, kind):
    from benchmarks.harness import BenchPath

    return BenchPath(name, kind, lambda: None)
