"""Which code made a file: a fingerprint of metagym's own source.

``metagym.__version__`` changes only at releases; between them a checkpoint written by one
commit and continued by another would mix two trainings without a trace. The fingerprint is the
SHA-256 of every ``metagym/**/*.py`` file (path and bytes, sorted), computed once per process.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


@functools.cache
def code_fingerprint() -> str:
    """The first 16 hex digits of the SHA-256 of metagym's Python source files."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
