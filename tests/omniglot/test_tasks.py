"""Omniglot tasks: the documented split, deterministic and disjoint sampling, shapes, OOD shifts."""

from __future__ import annotations

import pytest
import torch

from metagym.data.omniglot import OmniglotImages
from metagym.tasks import make_generator
from metagym.tasks.omniglot import OmniglotTasks, character_splits, shift_images


@pytest.fixture(scope="module")
def tasks(omniglot_images):
    return OmniglotTasks(5, 1, 3, train_ways=(20,), images=omniglot_images)


def test_standard_split_sizes_and_disjointness(omniglot_images):
    chars = character_splits(omniglot_images)
    assert [len(chars[s]) for s in ("train", "val", "test")] == [1028, 172, 423]
    train, val, test = (set(chars[s].tolist()) for s in ("train", "val", "test"))
    assert not train & val and not train & test and not val & test
    assert len(train | val | test) == 1623
    alphabets = set(chars["test-alphabets"].tolist())
    assert alphabets and not alphabets & (train | val)
    assert all(int(omniglot_images.split[c]) == 1 for c in alphabets)
    # The documented shuffle: randperm(1623) from seed 0.
    order = torch.randperm(1623, generator=torch.Generator().manual_seed(0))
    assert chars["test"].tolist() == order[1200:].tolist()


def test_alphabets_protocol_trains_on_background_only(omniglot_images):
    chars = character_splits(omniglot_images, "alphabets")
    seen = torch.cat([chars["train"], chars["val"]])
    assert bool((omniglot_images.split[seen] == 0).all())
    assert len(chars["test-alphabets"]) == 659


def test_sampling_is_deterministic_and_shaped(tasks):
    a = tasks.sample(3, "test", make_generator(7))
    b = tasks.sample(3, "test", make_generator(7))
    c = tasks.sample(3, "test", make_generator(8))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.support.x, y.support.x) and torch.equal(x.query.y, y.query.y)
        assert x.params == y.params
    assert a[0].params != c[0].params
    task = a[0]
    assert task.support.x.shape == (5, 1, 28, 28) and task.support.x.dtype == torch.float32
    assert task.query.x.shape == (15, 1, 28, 28)
    assert sorted(task.support.y.tolist()) == [0, 1, 2, 3, 4]
    assert task.query.y.tolist() == [c for c in range(5) for _ in range(3)]
    assert 0.0 <= float(task.support.x.min()) and float(task.support.x.max()) <= 1.0


def test_tasks_use_only_their_split_and_distinct_drawings(tasks, omniglot_images):
    chars = character_splits(omniglot_images)
    ids = {s: set(omniglot_images.char_id[chars[s]].tolist()) for s in chars}
    for split, base in (
        ("train", "train"),
        ("val", "val"),
        ("test", "test"),
        ("ood-scale-0.6", "test"),
    ):
        for task in tasks.sample(20, split, make_generator(1)):
            assert set(task.params["char_ids"]) <= ids[base]
            classes = list(zip(task.params["char_ids"], task.params["rotations"], strict=True))
            assert len(set(classes)) == 5
            for drawers in task.params["drawers"]:
                assert len(set(drawers)) == 4  # 1 support + 3 queries, all different drawings
            if split != "train":
                assert set(task.params["rotations"]) == {0}
    rotations = {
        r for t in tasks.sample(20, "train", make_generator(2)) for r in t.params["rotations"]
    }
    assert rotations == {0, 90, 180, 270}
    assert len(tasks.sample(1, "train-20way", make_generator(3))[0].support.y) == 20


def test_support_image_is_the_named_drawing(tasks, omniglot_images):
    task = tasks.sample(1, "test", make_generator(4))[0]
    index = {int(c): i for i, c in enumerate(omniglot_images.char_id)}
    for label, (char_id, drawers) in enumerate(
        zip(task.params["char_ids"], task.params["drawers"], strict=True)
    ):
        expected = omniglot_images.images[index[char_id], drawers[0] - 1].float() / 255
        position = task.support.y.tolist().index(label)
        assert torch.equal(task.support.x[position, 0], expected)


def test_invalid_settings_are_refused(omniglot_images):
    with pytest.raises(ValueError, match="exceeds the 20 drawings"):
        OmniglotTasks(5, 5, 16, images=omniglot_images)
    with pytest.raises(ValueError, match="has 172"):
        OmniglotTasks(200, 1, 1, images=omniglot_images)
    with pytest.raises(ValueError, match="unknown protocol"):
        OmniglotTasks(images=omniglot_images, protocol="mine")


def test_small_image_sets_keep_the_proportions():
    images = OmniglotImages(
        images=torch.zeros(40, 20, 28, 28, dtype=torch.uint8),
        split=torch.tensor([0] * 24 + [1] * 16),
        alphabet=["a"] * 40,
        character=["c"] * 40,
        char_id=torch.arange(1, 41),
    )
    chars = character_splits(images)
    assert sum(len(chars[s]) for s in ("train", "val", "test")) == 40
    with pytest.raises(ValueError, match="split 'val' has"):
        OmniglotTasks(5, 1, 1, images=images)


def test_shifts():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 4:24, 12:16] = 1.0  # a vertical bar
    assert torch.allclose(shift_images(x, "scale", 1.0), x, atol=1e-6)
    small = shift_images(x, "scale", 0.5)
    assert float(small.sum()) == pytest.approx(float(x.sum()) / 4, rel=0.15)
    sheared = shift_images(x, "shear", 0.5)
    top, bottom = sheared[0, 0, 5].argmax(), sheared[0, 0, 22].argmax()
    assert int(top) != int(bottom)  # the bar leans
    assert float(sheared.sum()) == pytest.approx(float(x.sum()), rel=0.1)


def test_score_is_query_accuracy(tasks):
    task = tasks.sample(1, "test", make_generator(0))[0]
    perfect = torch.nn.functional.one_hot(task.query.y, 5).float()
    assert tasks.score(lambda x: perfect, task) == 1.0
    assert tasks.score(lambda x: perfect.roll(1, dims=1), task) == 0.0
    assert tasks.row_fields() == {"ways": 5, "shots": 1}
