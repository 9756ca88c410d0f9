"""Shared test fixtures."""

import atexit
import os
import shutil
import tempfile

import pytest
import torch

# torch.compile's on-disk cache can serve graphs built under another CPU code path (another
# ATEN_CPU_CAPABILITY: wrong numbers, docs/performance.md): each test process compiles into a
# folder of its own, removed when it ends.
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="metagym-tests-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = _CACHE
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny nets run faster on one thread, and the suite shares 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
