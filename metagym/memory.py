"""Peak memory of a block of work (one learner's meta-training and evaluation).

    with PeakMemory(device) as peak:
        ...
    peak.result()  # {"measure": ..., "peak_mb": ..., "start_mb": ..., "growth_mb": ...}

On CUDA it is ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``: the largest
total of tensors allocated on the device during the block (exact, tensors only). On CPU a
background thread samples the process's resident set size (``/proc/self/statm``) every
``interval`` seconds: ``peak_mb`` is the largest sample (the whole process: interpreter, torch,
data), ``growth_mb`` the peak minus the resident size at the start of the block. The sampler can
miss peaks shorter than its interval, and memory that an earlier learner of the same worker
process freed is reused without growing the resident size, so ``growth_mb`` is a lower bound for
later learners of a process. Without ``/proc`` (macOS), ``resource.getrusage``'s maximum resident
size of the process so far is used instead (``measure`` says which).
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from pathlib import Path
from typing import Any

import torch

MB = 1024 * 1024
_STATM = Path("/proc/self/statm")


def resident_bytes() -> int | None:
    """The process's resident set size now, in bytes (None where ``/proc`` is absent)."""
    try:
        return int(_STATM.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def max_resident_bytes() -> int:
    """The process's largest resident set size so far, in bytes (``getrusage``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


class PeakMemory:
    """Measure the peak memory of the ``with`` block (see the module docstring).

    Args:
        device: the torch device the work runs on (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        interval: seconds between resident-size samples on CPU.
    """

    def __init__(self, device: str = "cpu", interval: float = 0.02):
        self.device = torch.device(device)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0
        self._peak = 0
        self._measure = ""

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            now = resident_bytes()
            if now is not None:
                self._peak = max(self._peak, now)

    def start(self) -> PeakMemory:
        """Start measuring (``with PeakMemory(...)`` calls it)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            self._measure = "cuda max_memory_allocated (tensors on the device)"
            return self
        now = resident_bytes()
        if now is None:
            self._start = max_resident_bytes()
            self._measure = "getrusage max resident set size of the process"
            return self
        self._start = self._peak = now
        self._measure = "sampled resident set size of the process"
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """Stop measuring; return :meth:`result`."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._peak = torch.cuda.max_memory_allocated(self.device)
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            now = resident_bytes()
            self._peak = max(self._peak, now or 0)
        else:
            self._peak = max_resident_bytes()
        return self.result()

    def __enter__(self) -> PeakMemory:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def result(self) -> dict[str, Any]:
        """``measure``, ``peak_mb``, ``start_mb`` and ``growth_mb`` (MiB, one decimal)."""
        return {
            "measure": self._measure,
            "peak_mb": round(self._peak / MB, 1),
            "start_mb": round(self._start / MB, 1),
            "growth_mb": round(max(self._peak - self._start, 0) / MB, 1),
        }
