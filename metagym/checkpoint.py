"""Verified, atomic checkpoints.

A checkpoint file holds ``{"format", "sha256", "payload"}``: the ``torch.save`` bytes of the
state, as a uint8 tensor, and their SHA-256. It is written to a temporary file in the same folder,
then renamed over the target, so a reader never sees half a file; on load the checksum is
verified before the payload is read, and both reads use ``torch.load(weights_only=True)`` (tensors
and plain containers only: no code runs).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from metagym.results import write_atomic

FORMAT = "metagym-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint or learner file is damaged, truncated, tampered with or not metagym's."""


def _fix(path: Path) -> str:
    return (
        f"delete {path} (a --resume then trains that learner afresh), or start the run afresh "
        "with --overwrite"
    )


@contextlib.contextmanager
def _interrupt_after() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) until the block is done, then raise it: ``torch.save`` turns a
    KeyboardInterrupt raised inside it into a RuntimeError ("enforce fail at
    inline_container.cc"), which would end the run as an error rather than as interrupted."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def save_atomic(state: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` ``state`` with its checksum to ``path``, atomically (a Ctrl-C during the
    write takes effect once the file is in place)."""
    with _interrupt_after():
        return _save(state, path)


def _save(state: dict[str, Any], path: str | Path) -> Path:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    record = {
        "format": FORMAT,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8),
    }
    return write_atomic(path, lambda f: torch.save(record, f), sync=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load what :func:`save_atomic` wrote, verifying its checksum; a :class:`CheckpointError`
    naming the file and what to do when it is damaged."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, empty, garbage or unsafe: all mean a damaged file
        raise CheckpointError(
            f"{path} is damaged or not a metagym checkpoint ({type(error).__name__}); {_fix(path)}"
        ) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a verified metagym checkpoint (no {FORMAT} checksum); {_fix(path)}"
        )
    payload = record["payload"]
    data = payload.numpy().tobytes() if isinstance(payload, torch.Tensor) else b""
    if hashlib.sha256(data).hexdigest() != record.get("sha256"):
        raise CheckpointError(f"{path} fails its checksum (the file was altered); {_fix(path)}")
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"{path} holds a payload that does not load ({type(error).__name__}); {_fix(path)}"
        ) from None
