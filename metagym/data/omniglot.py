"""Omniglot storage: locate, verify, download, convert, load (Lake et al. 2015).

The library reads Omniglot from two npz files, ``omniglot_background.npz`` (30 alphabets, 964
characters) and ``omniglot_evaluation.npz`` (20 alphabets, 659 characters), each holding

============  =======  ================  ==============================================
key           dtype    shape             meaning
============  =======  ================  ==============================================
images        uint8    (C, 20, 105, 105) 1 = ink, 0 = background
alphabet      str      (C,)              alphabet folder name
character     str      (C,)              character folder name within the alphabet
drawer        int16    (C, 20)           the ``DD`` of ``NNNN_DD.png`` (1..20)
char_id       int16    (C,)              the ``NNNN`` of ``NNNN_DD.png`` (1..1623)
============  =======  ================  ==============================================

rows sorted by alphabet, then character (plain string order).

Where the files are looked for, in order (:func:`candidate_dirs`): the ``data_root`` argument
(``--data-root``), else the ``METAGYM_DATA`` environment variable, else a per-user cache
(``$XDG_CACHE_HOME/metagym`` or ``~/.cache/metagym``); in each, the ``omniglot/`` subfolder and
the folder itself. When no folder holds them, :func:`ensure_omniglot` downloads the canonical zips
of github.com/brendenlake/omniglot, checks their md5 (the sums torchvision publishes) and converts
them into the npz layout in the first candidate folder.

Every npz file is checked against a sha256 before it is read: the published sum of the reference
files, or the sum recorded next to a file this module converted (``<file>.sha256``). A corrupt or
truncated file raises :class:`ChecksumError`, never a silently wrong data set.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

ENV_VAR = "METAGYM_DATA"
SUBFOLDER = "omniglot"
SPLITS = ("background", "evaluation")
DRAWINGS = 20
IMAGE_SIZE = 105
DOWNLOAD_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python"

#: sha256 of the reference npz files (see SOURCE.md of the shared data folder).
NPZ_SHA256 = {
    "background": "b08bd6db841b74938d2981d7e78f502eb808c65dd038d84adc868a8856fe4cad",
    "evaluation": "ec3cba4c8038f7a113ac46d6a8fae3c2b71e01a9f1bbd2a82254a856d6b532ec",
}
#: md5 of the canonical zips (the values torchvision's ``Omniglot`` dataset checks).
ZIP_MD5 = {
    "background": "68d2efa1b9178cc56df9314c21c6e718",
    "evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
}
NUM_CHARACTERS = {"background": 964, "evaluation": 659}

_PNG_NAME = re.compile(r"^(\d{4})_(\d{2})\.png$")


class OmniglotDataError(RuntimeError):
    """Base class of the errors of this module."""


class ChecksumError(OmniglotDataError):
    """A file's checksum does not match: it is corrupt, truncated or not the expected file."""


class DataNotFoundError(OmniglotDataError, FileNotFoundError):
    """The npz files are in none of the searched folders and could not be downloaded."""


def npz_name(split: str) -> str:
    _check_split(split)
    return f"omniglot_{split}.npz"


def zip_name(split: str) -> str:
    _check_split(split)
    return f"images_{split}.zip"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown Omniglot split {split!r}; accepted: {', '.join(SPLITS)}")


def default_cache_dir() -> Path:
    """The per-user cache folder: ``$XDG_CACHE_HOME/metagym`` or ``~/.cache/metagym``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "metagym"


def data_root(explicit: str | Path | None = None) -> Path:
    """The root in use: ``explicit``, else ``$METAGYM_DATA``, else :func:`default_cache_dir`."""
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return default_cache_dir()


def candidate_dirs(root: str | Path | None = None) -> list[Path]:
    """Folders searched for the npz files, in order: ``<root>/omniglot`` then ``<root>``."""
    base = data_root(root)
    return [base / SUBFOLDER, base]


def find_omniglot(root: str | Path | None = None) -> Path | None:
    """The first candidate folder holding both npz files, or None."""
    for folder in candidate_dirs(root):
        if all((folder / npz_name(s)).is_file() for s in SPLITS):
            return folder
    return None


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def verify_npz(path: str | Path, split: str) -> str:
    """Check ``path`` against the published sha256 of ``split`` or its recorded ``.sha256`` file.

    Returns the file's sha256; raises :class:`ChecksumError` when neither matches.
    """
    path = Path(path)
    actual = file_digest(path)
    accepted = {NPZ_SHA256[split]}
    sidecar = _sidecar(path)
    recorded = sidecar.read_text().split() if sidecar.is_file() else []
    if recorded:
        accepted.add(recorded[0].strip())
    if actual not in accepted:
        raise ChecksumError(
            f"{path} has sha256 {actual} ({path.stat().st_size} bytes), but Omniglot's "
            f"{split} file must have sha256 {NPZ_SHA256[split]}"
            + (f" or the sum recorded in {sidecar}" if sidecar.is_file() else "")
            + ": the file is corrupt, truncated or not Omniglot. Delete it (and its .sha256 file) "
            "and run again to download and convert it, or copy a good file there."
        )
    return actual


def read_npz(path: str | Path, split: str) -> dict[str, np.ndarray]:
    """Verify and read one npz file; returns its arrays (layout in the module docstring)."""
    path = Path(path)
    verify_npz(path, split)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {
                key: data[key] for key in ("images", "alphabet", "character", "drawer", "char_id")
            }
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ChecksumError(f"{path} passed its checksum but cannot be read: {error}") from error
    images = arrays["images"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (DRAWINGS, 105, 105):
        raise ChecksumError(
            f"{path}: images must be uint8 (C, {DRAWINGS}, 105, 105), got {images.dtype} {images.shape}"
        )
    return arrays


# -- download and conversion ---------------------------------------------------------------------


def download(url: str, dest: str | Path, md5: str, *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` (atomically) and check its md5; raises on any failure."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
        actual = file_digest(tmp, "md5")
        if actual != md5:
            raise ChecksumError(f"{url} downloaded with md5 {actual}, expected {md5}")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def convert_zip(zip_path: str | Path, split: str) -> dict[str, np.ndarray]:
    """Read ``images_<split>.zip`` (``images_<split>/<alphabet>/<character>/NNNN_DD.png``) into
    the npz arrays; raises ValueError on any departure from that layout."""
    from PIL import Image

    _check_split(split)
    top = f"images_{split}"
    entries: dict[tuple[str, str], dict[int, tuple[int, str]]] = {}
    with zipfile.ZipFile(zip_path) as archive:
        for name in archive.namelist():
            if name.endswith("/") or "__MACOSX" in name:
                continue
            parts = name.split("/")
            if len(parts) != 4 or parts[0] != top:
                raise ValueError(
                    f"{zip_path}: unexpected entry {name!r} (expected {top}/A/C/NNNN_DD.png)"
                )
            match = _PNG_NAME.match(parts[3])
            if not match:
                raise ValueError(f"{zip_path}: unexpected file name {name!r}")
            char_id, drawer = int(match.group(1)), int(match.group(2))
            entries.setdefault((parts[1], parts[2]), {})[drawer] = (char_id, name)
        keys = sorted(entries)
        images = np.zeros((len(keys), DRAWINGS, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        drawers = np.zeros((len(keys), DRAWINGS), dtype=np.int16)
        char_ids = np.zeros(len(keys), dtype=np.int16)
        for c, key in enumerate(keys):
            files = entries[key]
            if sorted(files) != list(range(1, DRAWINGS + 1)):
                raise ValueError(f"{zip_path}: {'/'.join(key)} must hold drawings 01..{DRAWINGS}")
            ids = {cid for cid, _ in files.values()}
            if len(ids) != 1:
                raise ValueError(f"{zip_path}: {'/'.join(key)} mixes character ids {sorted(ids)}")
            char_ids[c] = ids.pop()
            for k, drawer in enumerate(range(1, DRAWINGS + 1)):
                with Image.open(io.BytesIO(archive.read(files[drawer][1]))) as img:
                    pixels = np.asarray(img.convert("1"), dtype=bool)
                if pixels.shape != (IMAGE_SIZE, IMAGE_SIZE):
                    raise ValueError(f"{files[drawer][1]}: size {pixels.shape}, expected 105x105")
                images[c, k] = ~pixels  # the PNGs store background as white: 1 = ink here
                drawers[c, k] = drawer
    if not keys:
        raise ValueError(f"{zip_path} holds no images under {top}/")
    return {
        "images": images,
        "alphabet": np.array([a for a, _ in keys]),
        "character": np.array([ch for _, ch in keys]),
        "drawer": drawers,
        "char_id": char_ids,
    }


def write_npz(arrays: Mapping[str, np.ndarray], path: str | Path) -> str:
    """Write ``arrays`` compressed and atomically, record the file's sha256 next to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        digest = file_digest(tmp)
        _sidecar(path).write_text(f"{digest}  {path.name}\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest


def _missing_message(searched: Sequence[Path], reason: str) -> str:
    folders = ", ".join(str(p) for p in searched)
    return (
        "Omniglot not found: no folder holds omniglot_background.npz and "
        f"omniglot_evaluation.npz (searched {folders}; download failed: {reason}); point "
        f"--data-root (or {ENV_VAR}) at a folder holding them (or an omniglot/ subfolder), or "
        f"put images_background.zip and images_evaluation.zip from {DOWNLOAD_URL} into "
        f"{searched[0]}, or run again with internet access"
    )


def ensure_omniglot(
    root: str | Path | None = None,
    *,
    download_missing: bool = True,
    base_url: str = DOWNLOAD_URL,
    zip_md5: Mapping[str, str] = ZIP_MD5,
    timeout: float = 60.0,
) -> Path:
    """The folder holding both npz files; download and convert the zips when none does.

    Zips already present in the target folder (``<root>/omniglot``) are checked and converted
    without downloading. Raises :class:`DataNotFoundError` naming the searched folders and how to
    provide the data when that fails.
    """
    found = find_omniglot(root)
    if found is not None:
        return found
    searched = candidate_dirs(root)
    target = searched[0]
    if not download_missing:
        raise DataNotFoundError(_missing_message(searched, "downloading was turned off"))
    try:
        for split in SPLITS:
            npz_path = target / npz_name(split)
            if npz_path.is_file():
                continue
            zip_path = target / zip_name(split)
            if zip_path.is_file():
                actual = file_digest(zip_path, "md5")
                if actual != zip_md5[split]:
                    raise ChecksumError(
                        f"{zip_path} has md5 {actual}, expected {zip_md5[split]} (delete it to "
                        "download it again)"
                    )
            else:
                download(f"{base_url}/{zip_name(split)}", zip_path, zip_md5[split], timeout=timeout)
            write_npz(convert_zip(zip_path, split), npz_path)
    except (OSError, urllib.error.URLError, ValueError) as error:
        if isinstance(error, ChecksumError):
            raise
        raise DataNotFoundError(
            _missing_message(searched, f"{type(error).__name__}: {error}")
        ) from error
    return target


# -- in-memory images ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OmniglotImages:
    """All characters of both splits, resized, in memory.

    Attributes:
        images: uint8 ``(1623, 20, size, size)``, 255 = ink; background characters first, then
            evaluation ones, each in file order.
        split: ``(1623,)`` int64, 0 = background, 1 = evaluation.
        alphabet: alphabet name per character (list of str).
        character: character folder name per character.
        char_id: ``(1623,)`` int64 global Omniglot character number.
    """

    images: Tensor
    split: Tensor
    alphabet: list[str]
    character: list[str]
    char_id: Tensor

    def __len__(self) -> int:
        return self.images.shape[0]


def resize_area(images: np.ndarray | Tensor, size: int, *, chunk: int = 2048) -> Tensor:
    """Resize uint8 0/1 images ``(..., H, W)`` to ``(..., size, size)`` by area averaging;
    returns uint8 in 0..255 (255 = all ink)."""
    x = torch.as_tensor(images)
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, *x.shape[-2:])
    out = torch.empty(flat.shape[0], 1, size, size, dtype=torch.uint8)
    for start in range(0, flat.shape[0], chunk):
        part = flat[start : start + chunk].float()
        scaled = F.interpolate(part, size=(size, size), mode="area") * 255.0
        out[start : start + chunk] = scaled.round().clamp(0, 255).to(torch.uint8)
    return out.reshape(*lead, size, size)


@lru_cache(maxsize=4)
def _load_cached(folder: str, size: int) -> OmniglotImages:
    parts = [read_npz(Path(folder) / npz_name(s), s) for s in SPLITS]
    for s, arrays in zip(SPLITS, parts, strict=True):
        if s in NUM_CHARACTERS and len(arrays["images"]) == 0:
            raise ChecksumError(f"{folder}/{npz_name(s)} holds no characters")
    images = torch.cat([resize_area(p["images"], size) for p in parts])
    return OmniglotImages(
        images=images,
        split=torch.cat(
            [torch.full((len(p["images"]),), i, dtype=torch.long) for i, p in enumerate(parts)]
        ),
        alphabet=[str(a) for p in parts for a in p["alphabet"]],
        character=[str(c) for p in parts for c in p["character"]],
        char_id=torch.cat([torch.as_tensor(p["char_id"].astype(np.int64)) for p in parts]),
    )


def load_omniglot(
    root: str | Path | None = None, *, size: int = 28, download_missing: bool = True
) -> OmniglotImages:
    """Locate (or download), verify and load both splits resized to ``size`` (cached per process)."""
    if not isinstance(size, int) or not 1 <= size <= IMAGE_SIZE:
        raise ValueError(f"size must be an int in 1..{IMAGE_SIZE}, got {size!r}")
    folder = ensure_omniglot(root, download_missing=download_missing)
    return _load_cached(str(folder.resolve()), size)
