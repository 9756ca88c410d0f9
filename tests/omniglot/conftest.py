"""Fixtures of the Omniglot tests: the shared data folder, loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: The complete data set shipped beside the repository (see its SOURCE.md).
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "omniglot"


@pytest.fixture(scope="session")
def omniglot_root() -> Path:
    """$METAGYM_DATA when set, else the shared data folder; skips when neither holds the data."""
    from metagym.data.omniglot import find_omniglot

    env = os.environ.get("METAGYM_DATA")
    root = Path(env) if env else SHARED_DATA
    if find_omniglot(root) is None:
        pytest.skip(f"Omniglot npz files not found under {root} (set METAGYM_DATA)")
    return root


@pytest.fixture(scope="session")
def omniglot_images(omniglot_root):
    from metagym.data.omniglot import load_omniglot

    return load_omniglot(omniglot_root, download_missing=False)
