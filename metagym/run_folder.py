"""The output folder of a run: one writer at a time, and nothing finished overwritten by accident.

- ``FolderLock``: an exclusive ``flock`` on ``<out>/.lock`` for the whole run; a second writer is
  refused with the holder's PID (the lock goes with the process, so a killed run leaves none).
- ``run.json`` records what defines each variant's results (domain, variant, seed, profile,
  metagym version). A folder that has one is refused without ``--resume`` (continue it, if the
  definition matches) or ``--overwrite`` (start it afresh).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metagym.results import read_json, write_json_atomic

RUN_FILE = "run.json"
#: Files of a variant folder that a fresh run writes again (``--overwrite`` removes them first).
RESULT_FILES = ("results.json", "results.md", RUN_FILE)


class FolderLock:
    """Hold ``<folder>/.lock`` exclusively (``with FolderLock(folder): ...``)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / ".lock"
        self._file = None

    def __enter__(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ValueError(
                f"{self.path.parent} is being written by process {holder}; wait for it to finish "
                "or give another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def differences(
    old: dict[str, Any],
    new: dict[str, Any],
    prefix: str = "",
    defaults: dict[str, Any] | None = None,
) -> list[str]:
    """Readable ``key: old -> new`` lines where two definitions differ. A key that ``old`` lacks
    reads as its value in ``defaults`` when there is one there (a setting added after ``old`` was
    written, whose default is what ran before it existed)."""
    defaults = defaults or {}
    lines = []
    for key in sorted(set(old) | set(new)):
        a = old[key] if key in old else defaults.get(key)
        b = new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = defaults.get(key)
            lines += differences(
                a, b, f"{prefix}{key}.", inner if isinstance(inner, dict) else None
            )
        elif a != b:
            lines.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return lines


def check_folder(
    folder: Path,
    definition: dict[str, Any],
    *,
    resume: bool,
    overwrite: bool,
    defaults: dict[str, Any] | None = None,
) -> None:
    """Refuse to write ``folder`` when that would lose or mix results (see the module docstring);
    ``defaults``: see :func:`differences`."""
    path = Path(folder) / RUN_FILE
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue, or start afresh")
    if not path.is_file():
        return
    if overwrite:
        return
    if not resume:
        raise ValueError(
            f"{folder} already holds a run; give --resume to continue it, --overwrite to replace "
            "it, or another --out"
        )
    changed = differences(read_json(path), definition, defaults=defaults)
    if changed:
        shown = "; ".join(changed[:8]) + ("; ..." if len(changed) > 8 else "")
        raise ValueError(
            f"--resume: {folder} was run with other settings ({shown}); run without --resume "
            "into another --out, or give --overwrite"
        )


def start_folder(
    folder: Path, definition: dict[str, Any], learners: Sequence[str], *, overwrite: bool
) -> None:
    """Write ``run.json``; with ``overwrite``, first remove the results and the named learners'
    folders. The other learners' folders are left alone when the definition is the one they ran
    under, and removed too when it changed (a leftover learner of another seed or profile would
    otherwise be resumed, re-scored and compared as if it belonged to the new run)."""
    folder = Path(folder)
    if overwrite:
        old = folder / RUN_FILE
        changed = not old.is_file() or bool(differences(read_json(old), definition))
        for name in RESULT_FILES:
            (folder / name).unlink(missing_ok=True)
        names = [p.name for p in (folder / "runs").glob("*")] if changed else learners
        for name in names:
            shutil.rmtree(folder / "runs" / name, ignore_errors=True)
    write_json_atomic(definition, folder / RUN_FILE)
