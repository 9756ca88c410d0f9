"""The learner contract over the registry: every (domain, learner) at the tiny profile trains,
round-trips its config through JSON, saves and loads into a fresh build, and ``adapt_steps``
predicts what ``adapt`` predicts (SB3 tests/test_save_load.py, Gymnasium test_all_env_api)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from metagym import domains
from metagym.domains.base import FAMILIES, Context
from metagym.learners.base import Learner
from metagym.seeding import build_seeded, make_generator
from metagym.train import TrainConfig, train

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"
#: The tiny profile's extra settings per domain (the custom domains need a distribution).
SETTINGS = {
    "regression": {"tasks": "metagym.tasks.sinusoid:SinusoidTasks"},
    "classification": {"tasks": "tests.image_tasks:StripeTasks"},
}
VARIANTS = {"omniglot": {"ways": 5, "shots": 1}}
#: Learners that need another environment than the tiny profile's.
LEARNER_SETTINGS = {
    ("rl", "ucb1"): {"env": "metagym/Bandit-v0"},
    ("rl", "thompson"): {"env": "metagym/Bandit-v0"},
}


def _cases():
    for name in domains.names():
        for learner in domains.get(name).recipes:
            yield pytest.param(name, learner, id=f"{name}-{learner}")


def _context(domain_name: str, learner: str) -> Context:
    domain = domains.get(domain_name)
    settings = {**SETTINGS.get(domain_name, {}), **LEARNER_SETTINGS.get((domain_name, learner), {})}
    profile = domain.profile("tiny").replace(**settings)
    if domain_name == "omniglot" and not SHARED_DATA.is_dir():
        pytest.skip("Omniglot data not found")
    return Context(
        domain,
        profile,
        dict(VARIANTS.get(domain_name, {})),
        (learner,),
        data_root=str(SHARED_DATA),
    )


def _same_prediction(distribution, first, second, task) -> None:
    if hasattr(task, "query"):
        a, b = first(task.query.x), second(task.query.x)
        assert a.shape[0] == task.query.x.shape[0]
        expected = distribution.output_size
        assert a.shape[-1] == expected, (a.shape, expected)
        torch.testing.assert_close(a, b)
    else:  # RL: a policy; the same seeded episodes give the same return
        assert distribution.score(first, task) == distribution.score(second, task)


@pytest.mark.parametrize(("domain_name", "name"), list(_cases()))
def test_learner_contract(domain_name, name, tmp_path):
    context = _context(domain_name, name)
    try:
        recipe = context.recipe(name)
        assert recipe.family in FAMILIES
        if recipe.check is not None:
            recipe.check(context)
        distribution = context.distribution(recipe.distribution_key(context))
        learner = build_seeded(lambda: recipe.build(context), 0)
        assert isinstance(learner, Learner)
        if learner.trainable:
            config = TrainConfig(
                2,
                min(recipe.get("meta_batch", context), 2),
                log_every=1,
                checkpoint_every=1,
                split=recipe.get("train_split", context),
            )
            train(learner, distribution, config, tmp_path / "run", progress=False)
            assert learner.optimizer is not None
        settings = learner.config()
        assert json.loads(json.dumps(settings)) == settings
        assert settings["name"] == name

        learner.save(tmp_path / "learner.pt")
        fresh = build_seeded(lambda: recipe.build(context), 1)
        fresh.load(tmp_path / "learner.pt")
        mine, theirs = learner.state_dict(), fresh.state_dict()
        assert mine.keys() == theirs.keys()
        for key in mine:
            torch.testing.assert_close(mine[key], theirs[key], rtol=0, atol=0)

        split = context.domain.eval_splits(context)[0]
        task = distribution.sample(1, split, make_generator(3))[0]
        learner.eval()
        if learner.uses_steps:
            steps = max(recipe.get("eval_steps", context))
            _same_prediction(
                distribution,
                learner.adapt_steps(task, [steps])[steps],
                learner.adapt(task, steps),
                task,
            )
        else:
            _same_prediction(distribution, learner.adapt(task), learner.adapt(task), task)
    finally:
        context.close()


def test_every_registered_domain_has_a_tiny_profile_and_known_families():
    for name in domains.names():
        domain = domains.get(name)
        assert "tiny" in domain.profiles, name
        assert domain.default_profile in domain.profiles
        for recipe in domain.recipes.values():
            assert recipe.family in FAMILIES


def test_unknown_domain_names_the_registered_ones():
    with pytest.raises(ValueError, match="unknown domain .nope.; accepted: .*sinusoid"):
        domains.get("nope")
