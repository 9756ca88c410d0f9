"""Shared test fixtures."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny nets run faster on one thread, and the suite shares 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
