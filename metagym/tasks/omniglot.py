"""Few-shot image classification on Omniglot (Lake et al. 2015): N-way K-shot tasks.

A task draws N classes of a split, then K support and Q query drawings of each (distinct
drawers). Labels 0..N-1 follow the random class order; the support set is shuffled. Images are
``(1, 28, 28)`` floats in [0, 1], 1 = ink.

Splits (protocol ``"standard"``, the one of MAML and Prototypical Networks):
    A fixed shuffle of all 1,623 characters (``torch.randperm(1623)`` from generator seed
    ``split_seed``, default 0, over characters ordered background then evaluation, each in file
    order): the first 1,028 are ``train``, the next 172 ``val`` (together the 1,200 meta-training
    characters), the remaining 423 ``test``.
    ``train`` (and ``train-<W>way``, the same classes with W ways, for learners that train with
    more ways than they are tested on) adds the rotations by 90, 180 and 270 degrees as extra
    classes: 4,112 classes. The other splits use unrotated characters.
    ``test-alphabets``: characters of the 20 evaluation alphabets of the original background /
    evaluation split that are in neither ``train`` nor ``val``. With protocol ``"standard"``
    other characters of these alphabets are in ``train``; with protocol ``"alphabets"``
    (``train``/``val`` from the 30 background alphabets only) the alphabets were never seen.
    ``ood-shear-<s>``: ``test`` characters sheared by ``s`` (x += s * y, in image units).
    ``ood-scale-<s>``: ``test`` characters shrunk by the factor ``s`` around the centre.
    (The shifts of Finn & Levine 2018, applied to support and query alike.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

from metagym.data.omniglot import DRAWINGS, OmniglotImages, load_omniglot
from metagym.tasks.base import Examples, SupervisedTask, TaskDistribution, make_generator

PROTOCOLS = ("standard", "alphabets")
TRAIN_CHARACTERS = 1200
VAL_CHARACTERS = 172
DEFAULT_SHEAR_LEVELS = (0.2, 0.4, 0.6)
DEFAULT_SCALE_LEVELS = (0.8, 0.6, 0.4)


def _format_level(level: float) -> str:
    return f"{level:g}"


def character_splits(
    images: OmniglotImages, protocol: str = "standard", split_seed: int = 0
) -> dict[str, Tensor]:
    """Indices (into ``images``) of the characters of ``train``, ``val``, ``test`` and
    ``test-alphabets`` (see the module docstring)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; accepted: {', '.join(PROTOCOLS)}")
    n = len(images)
    order = torch.randperm(n, generator=make_generator(split_seed))
    # The full data set gives 1,028 / 172 / 423; smaller ones (tests) keep the proportions.
    n_train = round(n * TRAIN_CHARACTERS / 1623)
    n_val = max(1, round(n_train * VAL_CHARACTERS / TRAIN_CHARACTERS))
    test = order[n_train:]
    if protocol == "standard":
        train, val = order[: n_train - n_val], order[n_train - n_val : n_train]
    else:
        background = order[images.split[order] == 0]
        n_val = max(1, round(len(background) * VAL_CHARACTERS / 1200))
        train, val = background[:-n_val], background[-n_val:]
    seen = torch.zeros(n, dtype=torch.bool)
    seen[train] = True
    seen[val] = True
    evaluation = torch.nonzero((images.split == 1) & ~seen).flatten()
    return {
        "train": train,
        "val": val,
        "test": test[~seen[test]],
        "test-alphabets": evaluation[
            torch.randperm(len(evaluation), generator=make_generator(split_seed))
        ],
    }


def shift_images(x: Tensor, kind: str, level: float) -> Tensor:
    """Shear (``x += level * y``) or shrink (by the factor ``level``) images ``(n, 1, H, W)``."""
    if kind == "shear":
        row = [[1.0, level, 0.0], [0.0, 1.0, 0.0]]
    elif kind == "scale":
        row = [[1.0 / level, 0.0, 0.0], [0.0, 1.0 / level, 0.0]]
    else:
        raise ValueError(f"unknown shift {kind!r}; accepted: shear, scale")
    theta = torch.tensor(row, dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class OmniglotTasks(TaskDistribution):
    """N-way K-shot Omniglot tasks.

    Args:
        ways: classes per task (N) for every split but ``train-<W>way``.
        shots: support drawings per class (K).
        queries: query drawings per class (Q) for evaluation splits.
        train_queries: query drawings per class in the ``train*`` splits (default ``queries``).
        train_ways: extra training ways W, each giving a split ``train-<W>way``.
        protocol: ``"standard"`` or ``"alphabets"`` (see the module docstring).
        split_seed: seed of the character shuffle (0 is the documented split).
        shear_levels, scale_levels: OOD shift levels; one split per level.
        data_root: folder of the data (see :mod:`metagym.data.omniglot`).
        images: already loaded images (tests); skips loading from ``data_root``.
        image_size: side of the resized images.
        device: where the images live; tasks are built there.

    Task shapes: ``support.x`` ``(N*K, 1, s, s)`` float32, ``support.y`` ``(N*K,)`` int64,
    ``query.x`` ``(N*Q, 1, s, s)``, ``query.y`` ``(N*Q,)`` (class-major order).
    """

    domain = "omniglot"
    metric = "accuracy"
    lower_is_better = False

    def __init__(
        self,
        ways: int = 5,
        shots: int = 1,
        queries: int = 15,
        *,
        train_queries: int | None = None,
        train_ways: Sequence[int] = (),
        protocol: str = "standard",
        split_seed: int = 0,
        shear_levels: Sequence[float] = DEFAULT_SHEAR_LEVELS,
        scale_levels: Sequence[float] = DEFAULT_SCALE_LEVELS,
        data_root: str | Path | None = None,
        images: OmniglotImages | None = None,
        image_size: int = 28,
        device: str | torch.device = "cpu",
    ):
        train_queries = queries if train_queries is None else train_queries
        for name, value in (
            ("ways", ways),
            ("shots", shots),
            ("queries", queries),
            ("train_queries", train_queries),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if ways < 2:
            raise ValueError(f"ways must be >= 2, got {ways}")
        for name, q in (("queries", queries), ("train_queries", train_queries)):
            if shots + q > DRAWINGS:
                raise ValueError(
                    f"shots + {name} = {shots} + {q} exceeds the {DRAWINGS} drawings of each character"
                )
        for level in shear_levels:
            if not 0 < level <= 2:
                raise ValueError(f"shear levels must be in (0, 2], got {level}")
        for level in scale_levels:
            if not 0 < level <= 1:
                raise ValueError(f"scale levels must be in (0, 1], got {level}")
        self.ways, self.shots, self.queries = ways, shots, queries
        self.train_queries = train_queries
        self.train_ways = tuple(sorted({int(w) for w in train_ways} - {ways}))
        self.protocol = protocol
        self.split_seed = split_seed
        self.shifts = {f"ood-shear-{_format_level(s)}": ("shear", float(s)) for s in shear_levels}
        self.shifts |= {f"ood-scale-{_format_level(s)}": ("scale", float(s)) for s in scale_levels}
        self.device = torch.device(device)

        data = images if images is not None else load_omniglot(data_root, size=image_size)
        self.image_size = data.images.shape[-1]
        self.input_shape = (1, self.image_size, self.image_size)
        self.output_size = ways
        self.char_id = data.char_id
        self.alphabet = data.alphabet
        self.characters = character_splits(data, protocol, split_seed)
        self.images = data.images.to(self.device)
        self.splits = (
            "train",
            *(f"train-{w}way" for w in self.train_ways),
            "val",
            "test",
            "test-alphabets",
            *self.shifts,
        )
        for split in self.splits:
            available = self.num_classes(split)
            need = self.split_ways(split)
            if need > available:
                raise ValueError(
                    f"{need}-way tasks need {need} classes, but split {split!r} has {available}"
                )

    # -- split structure -------------------------------------------------------------------------
    def _is_train(self, split: str) -> bool:
        return split == "train" or split.startswith("train-")

    def split_ways(self, split: str) -> int:
        if split.startswith("train-") and split.endswith("way"):
            return int(split[len("train-") : -len("way")])
        return self.ways

    def _base_split(self, split: str) -> str:
        if self._is_train(split):
            return "train"
        if split in self.shifts:
            return "test"
        return split

    def num_classes(self, split: str) -> int:
        """Classes of ``split`` (training classes count each rotation)."""
        self.check_split(split)
        n = len(self.characters[self._base_split(split)])
        return 4 * n if self._is_train(split) else n

    # -- sampling --------------------------------------------------------------------------------
    def _sample(self, n: int, split: str, generator: torch.Generator) -> list[SupervisedTask]:
        ways, shots = self.split_ways(split), self.shots
        training = self._is_train(split)
        queries = self.train_queries if training else self.queries
        chars = self.characters[self._base_split(split)]
        n_classes = 4 * len(chars) if training else len(chars)
        per_class = shots + queries

        classes = torch.rand(n, n_classes, generator=generator).argsort(dim=1)[:, :ways]
        drawers = torch.rand(n, ways, DRAWINGS, generator=generator).argsort(dim=2)[..., :per_class]
        order = torch.rand(n, ways * shots, generator=generator).argsort(dim=1)
        char_index = chars[classes // 4] if training else chars[classes]
        rotation = classes % 4 if training else torch.zeros_like(classes)

        device = self.device
        pixels = self.images[char_index.to(device)[..., None], drawers.to(device)]
        for r in (1, 2, 3):  # (n, ways, per_class, s, s)
            mask = (rotation == r).to(device)
            if bool(mask.any()):
                pixels[mask] = torch.rot90(pixels[mask], r, dims=(-2, -1))
        x = pixels.unsqueeze(3).float().div_(255.0)  # (n, ways, per_class, 1, s, s)
        if split in self.shifts:
            kind, level = self.shifts[split]
            x = shift_images(x.flatten(0, 2), kind, level).view_as(x)
        labels = torch.arange(ways, device=device).view(1, ways, 1).expand(n, ways, per_class)
        s = self.image_size
        support_x = x[:, :, :shots].reshape(n, ways * shots, 1, s, s)
        support_y = labels[:, :, :shots].reshape(n, ways * shots)
        order = order.to(device)
        support_x = torch.take_along_dim(support_x, order.view(n, -1, 1, 1, 1), dim=1)
        support_y = torch.take_along_dim(support_y, order, dim=1)
        query_x = x[:, :, shots:].reshape(n, ways * queries, 1, s, s)
        query_y = labels[:, :, shots:].reshape(n, ways * queries)
        tasks = []
        for i in range(n):
            params = {
                "split": split,
                "class_ids": classes[i].tolist(),
                "char_ids": self.char_id[char_index[i]].tolist(),
                "rotations": (90 * rotation[i]).tolist(),
                "drawers": (drawers[i] + 1).tolist(),  # per class: support drawers, then query
            }
            if split in self.shifts:
                params["shift"] = list(self.shifts[split])
            tasks.append(
                SupervisedTask(
                    support=Examples(support_x[i].contiguous(), support_y[i].contiguous()),
                    query=Examples(query_x[i].contiguous(), query_y[i].contiguous()),
                    params=params,
                )
            )
        return tasks

    # -- scoring ---------------------------------------------------------------------------------
    def score(self, predictor: Callable[[Tensor], Tensor], task: SupervisedTask) -> float:
        """Accuracy on the query set: the arg-max of the predictor's class scores."""
        with torch.no_grad():
            scores = predictor(task.query.x)
            return float((scores.argmax(dim=-1) == task.query.y).float().mean())

    def shift_levels(self) -> dict[str, dict[str, float]]:
        """OOD splits by kind: ``{"shear": {split: level}, "scale": {...}}``."""
        out: dict[str, dict[str, float]] = {}
        for split, (kind, level) in self.shifts.items():
            out.setdefault(kind, {})[split] = level
        return out

    def row_fields(self) -> dict:
        return {"ways": self.ways, "shots": self.shots}

    def describe(self) -> dict:
        return {
            "domain": self.domain,
            "ways": self.ways,
            "shots": self.shots,
            "queries": self.queries,
            "train_queries": self.train_queries,
            "train_ways": list(self.train_ways),
            "protocol": self.protocol,
            "split_seed": self.split_seed,
            "image_size": self.image_size,
            "characters": {k: len(v) for k, v in self.characters.items()},
            "classes": {s: self.num_classes(s) for s in ("train", "val", "test", "test-alphabets")},
            "shifts": {k: list(v) for k, v in self.shifts.items()},
        }
