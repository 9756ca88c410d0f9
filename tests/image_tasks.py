"""A tiny synthetic image distribution for the ``classification`` domain's tests: each class is a
bright row of a 16x16 image, drawn with noise. Training classes are rows 0..9, test rows 10..15."""

from __future__ import annotations

import torch

from metagym.tasks.base import Examples, SupervisedTask, TaskDistribution

ROWS = {
    "train": range(0, 10),
    "val": range(0, 10),
    "test": range(10, 16),
    "ood-noisy": range(10, 16),
}


class StripeTasks(TaskDistribution):
    """N-way K-shot tasks of noisy stripe images ``(1, 16, 16)``."""

    domain = "stripes"
    splits = tuple(ROWS)
    metric = "accuracy"
    lower_is_better = False
    input_shape = (1, 16, 16)

    def __init__(self, ways: int = 3, shots: int = 1, queries: int = 2):
        self.ways, self.shots, self.queries = ways, shots, queries
        self.output_size = ways

    def num_classes(self, split: str) -> int:
        return len(ROWS[split])

    def _images(self, rows, n, noise, generator):
        x = noise * torch.rand(len(rows), n, 1, 16, 16, generator=generator)
        for i, row in enumerate(rows):
            x[i, :, 0, row, :] += 1.0
        return x

    def _sample(self, n, split, generator):
        noise = 0.9 if split == "ood-noisy" else 0.3
        rows = list(ROWS[split])
        tasks = []
        for _ in range(n):
            pick = torch.randperm(len(rows), generator=generator)[: self.ways].tolist()
            chosen = [rows[i] for i in pick]
            per_class = self._images(chosen, self.shots + self.queries, noise, generator)
            labels = torch.arange(self.ways).repeat_interleave(self.shots + self.queries)
            x = per_class.reshape(-1, 1, 16, 16)
            is_support = (torch.arange(self.shots + self.queries) < self.shots).repeat(self.ways)
            tasks.append(
                SupervisedTask(
                    Examples(x[is_support], labels[is_support]),
                    Examples(x[~is_support], labels[~is_support]),
                    {"split": split, "class_ids": pick},
                )
            )
        return tasks

    def score(self, predictor, task):
        with torch.no_grad():
            return float((predictor(task.query.x).argmax(-1) == task.query.y).float().mean())
