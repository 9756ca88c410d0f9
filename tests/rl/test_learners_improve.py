"""Each RL learner improves on a tiny Navigation2D budget (the SB3 check_identity idea)."""

import pytest

from metagym.evaluate import evaluate
from metagym.rl.maml_rl import MAMLRL
from metagym.rl.policies import make_policy
from metagym.rl.sb3_learners import PPOBaseline
from metagym.seeding import build_seeded
from metagym.tasks.base import make_generator
from metagym.tasks.gym import GymTaskDistribution

NAV = "metagym/Navigation2D-v0"


def _score(learner, dist, tasks, steps):
    rows = evaluate(learner, dist, "test", tasks, steps, progress=False)
    return {r["steps"]: r["mean"] for r in rows}


def _train(learner, dist, iterations, meta_batch, seed=0):
    gen = make_generator(seed)
    for _ in range(iterations):
        metrics = learner.meta_train_step(dist.sample(meta_batch, "train", gen))
    return metrics


@pytest.mark.parametrize("name", ["maml", "pretrain-pg"])
def test_maml_rl_improves(name):
    dist = GymTaskDistribution(NAV, max_episode_steps=50, eval_episodes=4)
    tasks = dist.sample(6, "test", make_generator(5))

    def build():
        policy = make_policy(dist.observation_space, dist.action_space, hidden=(32, 32))
        return MAMLRL(
            policy, dist.sampler, fast_batch=8, train_steps=1 if name == "maml" else 0, name=name
        )

    learner = build_seeded(build, 0)
    before = _score(learner, dist, tasks, [0, 1])
    metrics = _train(learner, dist, 4, 4)
    after = _score(learner, dist, tasks, [0, 1])
    assert after[1] > before[1] + 5, (before, after)
    assert 0 <= metrics["trpo/kl"] <= 0.01
    dist.close()


def test_pretrain_and_oracle_ppo_improve():
    dist = GymTaskDistribution(NAV, max_episode_steps=50, eval_episodes=4)
    tasks = dist.sample(4, "test", make_generator(5))
    for mode in ("pretrain", "oracle"):
        learner = PPOBaseline(
            dist, mode, n_envs=4, steps_per_iteration=2048, ppo_kwargs={"n_steps": 256}
        )
        before = _score(learner, dist, tasks, [0])
        _train(learner, dist, 3, 8)
        after = _score(learner, dist, tasks, [0])
        key = None if mode == "oracle" else 0
        assert after[key] > before[key] + 5, (mode, before, after)
    dist.close()


@pytest.mark.slow
def test_scratch_ppo_improves_with_steps():
    dist = GymTaskDistribution(NAV, max_episode_steps=50, eval_episodes=4)
    tasks = dist.sample(3, "test", make_generator(5))
    learner = PPOBaseline(dist, "scratch", fine_tune_kwargs={"n_steps": 500, "batch_size": 100})
    scores = _score(learner, dist, tasks, [0, 5000])
    assert scores[5000] > scores[0] + 5, scores
    dist.close()
