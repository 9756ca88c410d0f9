"""Training metrics to ``metrics.csv`` (and TensorBoard when asked and installed)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from metagym.results import write_atomic


class MetricsLog:
    """Appends one row per logging interval: ``iteration``, then metrics named ``group/name``.

    On resume, rows after ``resume_iteration`` (written after the last checkpoint) are dropped,
    so the file matches an uninterrupted run.
    """

    def __init__(
        self, path: Path, *, resume_iteration: int | None = None, tensorboard: bool = False
    ):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fields: list[str] | None = None
        rows: list[dict] = []
        if resume_iteration is not None and self.path.exists():
            with self.path.open(newline="") as f:
                reader = csv.DictReader(f)
                self.fields = reader.fieldnames and list(reader.fieldnames)
                rows = [
                    r
                    for r in reader
                    if (parsed := _parse_row(r)) is not None
                    and parsed.get("iteration", math.inf) <= resume_iteration
                ]
        text = io.StringIO(newline="")
        if self.fields:
            writer = csv.DictWriter(text, self.fields)
            writer.writeheader()
            writer.writerows(rows)
        # atomically: an interrupt while rewriting must not lose the rows before the checkpoint
        write_atomic(self.path, lambda f: f.write(text.getvalue().encode()))
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:
                raise RuntimeError(
                    "--tensorboard needs the tensorboard package: pip install 'metagym[tensorboard]'"
                ) from error
            self.writer = SummaryWriter(str(self.path.parent / "tensorboard"))

    def log(self, iteration: int, metrics: dict[str, float]) -> None:
        row = {"iteration": iteration, **metrics}
        with self.path.open("a", newline="") as f:
            if self.fields is None:
                self.fields = list(row)
                csv.DictWriter(f, self.fields).writeheader()
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(key, value, iteration)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """Rows of a ``metrics.csv`` as floats."""
    with Path(path).open(newline="") as f:
        return [parsed for row in csv.DictReader(f) if (parsed := _parse_row(row)) is not None]


def _parse_row(row: dict) -> dict[str, float] | None:
    """A row as floats; None for a row cut short (a run killed mid-write, a full disk)."""
    if None in row or any(v is None for v in row.values()):
        return None
    try:
        return {k: float(v) for k, v in row.items() if v != ""}
    except ValueError:
        return None
