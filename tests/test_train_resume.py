import math

import pytest
import torch

from metagym import domains
from metagym.checkpoint import load_checkpoint
from metagym.learners.base import Learner
from metagym.metrics_log import read_metrics
from metagym.seeding import build_seeded
from metagym.tasks import SinusoidTasks
from metagym.train import TrainConfig, TrainingDiverged, train


def _learner(name="maml"):
    context = domains.get("sinusoid").context("tiny")
    return build_seeded(lambda: context.recipe(name).build(context), seed=0)


@pytest.mark.parametrize("name", ["maml", "meta-sgd", "blackbox"])
def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(name, tmp_path):
    distribution = SinusoidTasks(5)
    config = TrainConfig(iterations=12, meta_batch=4, seed=5, log_every=3, checkpoint_every=3)
    whole = _learner(name)
    train(whole, distribution, config, tmp_path / "whole", progress=False)

    part = _learner(name)
    half = TrainConfig(**{**config.__dict__, "iterations": 6})
    train(part, distribution, half, tmp_path / "split", progress=False)
    resumed = _learner(name)  # a fresh process would start from freshly built weights
    train(resumed, distribution, config, tmp_path / "split", resume=True, progress=False)

    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    rows = read_metrics(tmp_path / "split" / "metrics.csv")
    assert [r["iteration"] for r in rows] == [3, 6, 9, 12]


class _Exploding(Learner):
    """A learner whose loss turns NaN at iteration 4."""

    name = "exploding"

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        self.calls = 0

    def meta_train_step(self, tasks):
        self.calls += 1
        return {"losses/x": math.nan if self.calls >= 4 else 1.0}

    def adapt(self, task, steps=None):
        return lambda x: x


def test_nan_loss_stops_training_naming_the_iteration_and_keeps_the_checkpoint(tmp_path):
    config = TrainConfig(iterations=10, meta_batch=2, log_every=1, checkpoint_every=2)
    with pytest.raises(TrainingDiverged, match="iteration 4"):
        train(_Exploding(), SinusoidTasks(5), config, tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["iteration"] == 2


def test_bad_training_settings_are_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="iterations"):
        train(_learner(), SinusoidTasks(5), TrainConfig(iterations=0, meta_batch=2), tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        train(
            _learner(), SinusoidTasks(5), TrainConfig(iterations=1, meta_batch=2), tmp_path / "file"
        )
    with pytest.raises(ValueError, match="inner-lr must be > 0"):
        domains.get("sinusoid").profile("tiny").replace(inner_lr=-1.0)


def test_save_and_load_round_trip(tmp_path):
    learner = _learner("pretrain")
    learner.set_fine_tune_lr(0.03)
    learner.save(tmp_path / "p.pt")
    other = _learner("pretrain")
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    other.load(tmp_path / "p.pt")
    for a, b in zip(learner.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="holds a 'pretrain' learner"):
        _learner("maml").load(tmp_path / "p.pt")


def test_resume_refuses_a_checkpoint_of_another_training(tmp_path):
    # a leftover learner folder of another seed must not be continued as if it were this run's
    distribution = SinusoidTasks(5)
    config = TrainConfig(iterations=4, meta_batch=2, seed=0, log_every=2, checkpoint_every=2)
    train(_learner(), distribution, config, tmp_path, progress=False)
    other = TrainConfig(**{**config.__dict__, "seed": 1, "iterations": 8})
    with pytest.raises(ValueError, match=r"another training \(seed: 0 -> 1\)"):
        train(_learner(), distribution, other, tmp_path, resume=True, progress=False)
    shorter = TrainConfig(**{**config.__dict__, "iterations": 2})
    with pytest.raises(ValueError, match="past the 2 asked"):
        train(_learner(), distribution, shorter, tmp_path, resume=True, progress=False)
    longer = TrainConfig(**{**config.__dict__, "iterations": 6, "log_every": 3})  # same training
    (tmp_path / ".checkpoint.pt.abc123.tmp").write_bytes(b"half")  # left by a SIGKILL
    train(_learner(), distribution, longer, tmp_path, resume=True, progress=False)
    assert not list(tmp_path.glob(".*.tmp"))


def test_ctrl_c_during_a_checkpoint_write_takes_effect_once_the_file_is_in_place(tmp_path):
    import os
    import signal

    from metagym import checkpoint

    real = checkpoint._save

    def interrupted(state, path):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the write
        return real(state, path)

    checkpoint._save = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            checkpoint.save_atomic({"iteration": 3}, tmp_path / "checkpoint.pt")
    finally:
        checkpoint._save = real
    assert load_checkpoint(tmp_path / "checkpoint.pt") == {"iteration": 3}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_resume_refuses_a_checkpoint_written_by_other_code(tmp_path):
    from metagym.checkpoint import save_atomic
    from metagym.provenance import code_fingerprint

    distribution = SinusoidTasks(5)
    config = TrainConfig(iterations=4, meta_batch=2, log_every=2, checkpoint_every=2)
    train(_learner(), distribution, config, tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["code"] == code_fingerprint() and len(code_fingerprint()) == 16
    save_atomic({**state, "code": "0123456789abcdef"}, tmp_path / "checkpoint.pt")
    more = TrainConfig(**{**config.__dict__, "iterations": 6})
    with pytest.raises(ValueError, match="other metagym code"):
        train(_learner(), distribution, more, tmp_path, resume=True, progress=False)


def test_a_resumed_metrics_row_averages_the_same_iterations(tmp_path):
    # log every 4, checkpoint every 3: interrupted at 6, the row at 8 must still average 5..8
    distribution = SinusoidTasks(5)
    config = TrainConfig(iterations=12, meta_batch=4, seed=2, log_every=4, checkpoint_every=3)
    train(_learner(), distribution, config, tmp_path / "whole", progress=False)

    class Interrupted(SinusoidTasks):
        calls = 0

        def sample(self, *args, **kwargs):
            Interrupted.calls += 1
            if Interrupted.calls == 8:  # killed while drawing iteration 8's meta-batch
                raise KeyboardInterrupt
            return super().sample(*args, **kwargs)

    with pytest.raises(KeyboardInterrupt):
        train(_learner(), Interrupted(5), config, tmp_path / "split", progress=False)
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["iteration"] == 6
    train(_learner(), distribution, config, tmp_path / "split", resume=True, progress=False)

    def rows(folder):
        rate = "charts/iterations_per_second"
        return [{k: v for k, v in r.items() if k != rate} for r in read_metrics(folder)]

    whole, split = (
        rows(tmp_path / "whole" / "metrics.csv"),
        rows(tmp_path / "split" / "metrics.csv"),
    )
    assert [r["iteration"] for r in split] == [4, 8, 12]
    assert split == whole
