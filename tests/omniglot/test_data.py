"""Omniglot storage: conversion from zips in the canonical layout, checksums, missing-data errors."""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metagym.data import omniglot as og

# Small fake data set in the canonical folder structure: {split: {alphabet: {character: id}}}.
FAKE = {
    "background": {
        "Beta": {"character01": 3, "character02": 4},
        "Alpha": {"character01": 1, "character02": 2},
    },
    "evaluation": {"Gamma": {"character01": 5, "character02": 6, "character03": 7}},
}


def _png(char_id: int, drawer: int) -> tuple[bytes, np.ndarray]:
    """A 105x105 1-bit PNG (white background) and its ink mask."""
    ink = np.zeros((105, 105), dtype=bool)
    ink[char_id * 5 : char_id * 5 + 10, drawer * 4 : drawer * 4 + 3] = True
    buffer = io.BytesIO()
    Image.fromarray(~ink).convert("1").save(buffer, format="PNG")
    return buffer.getvalue(), ink


def build_zips(folder: Path) -> dict[str, str]:
    """Write images_<split>.zip for FAKE into ``folder``; returns their md5s."""
    folder.mkdir(parents=True, exist_ok=True)
    md5 = {}
    for split, alphabets in FAKE.items():
        path = folder / f"images_{split}.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for alphabet, characters in alphabets.items():
                for character, char_id in characters.items():
                    for drawer in range(20, 0, -1):  # reverse order: conversion must sort
                        data, _ = _png(char_id, drawer)
                        archive.writestr(
                            f"images_{split}/{alphabet}/{character}/{char_id:04d}_{drawer:02d}.png",
                            data,
                        )
        md5[split] = hashlib.md5(path.read_bytes()).hexdigest()
    return md5


@pytest.fixture
def served(tmp_path):
    """Fake zips behind a file:// URL, as the download would see them."""
    server = tmp_path / "server"
    md5 = build_zips(server)
    return server.as_uri(), md5


def test_download_and_convert_builds_the_npz_layout(served, tmp_path):
    url, md5 = served
    root = tmp_path / "root"
    folder = og.ensure_omniglot(root, base_url=url, zip_md5=md5)
    assert folder == root / "omniglot"
    arrays = og.read_npz(folder / "omniglot_background.npz", "background")
    assert arrays["alphabet"].tolist() == ["Alpha", "Alpha", "Beta", "Beta"]
    assert arrays["character"].tolist() == ["character01", "character02"] * 2
    assert arrays["char_id"].tolist() == [1, 2, 3, 4]
    assert arrays["drawer"].tolist() == [list(range(1, 21))] * 4
    assert arrays["images"].dtype == np.uint8 and arrays["images"].shape == (4, 20, 105, 105)
    for c, char_id in enumerate([1, 2, 3, 4]):
        for k in (0, 19):
            np.testing.assert_array_equal(
                arrays["images"][c, k], _png(char_id, k + 1)[1].astype(np.uint8)
            )
    assert (folder / "omniglot_background.npz.sha256").is_file()
    # Found again without downloading; loaded, resized and ordered background then evaluation.
    assert og.ensure_omniglot(root, base_url="file:///nonexistent") == folder
    images = og.load_omniglot(root, download_missing=False)
    assert images.images.shape == (7, 20, 28, 28) and images.images.dtype == torch.uint8
    assert images.split.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert images.char_id.tolist() == [1, 2, 3, 4, 5, 6, 7]


def test_zips_already_in_the_folder_are_converted_without_download(tmp_path):
    md5 = build_zips(tmp_path / "root" / "omniglot")
    folder = og.ensure_omniglot(tmp_path / "root", base_url="file:///nonexistent", zip_md5=md5)
    assert (folder / "omniglot_evaluation.npz").is_file()


def test_a_download_with_the_wrong_md5_is_refused(served, tmp_path):
    url, md5 = served
    with pytest.raises(og.ChecksumError, match="md5"):
        og.ensure_omniglot(tmp_path / "root", base_url=url, zip_md5={**md5, "background": "0" * 32})
    assert not (tmp_path / "root" / "omniglot" / "images_background.zip").exists()


def test_canonical_md5s_are_torchvisions():
    assert og.ZIP_MD5 == {
        "background": "68d2efa1b9178cc56df9314c21c6e718",
        "evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
    }


def test_missing_data_error_names_the_folders_and_the_remedies(tmp_path, monkeypatch):
    monkeypatch.setenv("METAGYM_DATA", str(tmp_path / "env"))
    with pytest.raises(og.DataNotFoundError) as info:
        og.ensure_omniglot(base_url=(tmp_path / "nowhere").as_uri())
    message = str(info.value)
    assert str(tmp_path / "env" / "omniglot") in message and str(tmp_path / "env") in message
    assert (
        "--data-root" in message
        and "METAGYM_DATA" in message
        and "images_background.zip" in message
    )
    with pytest.raises(og.DataNotFoundError, match="turned off"):
        og.load_omniglot(tmp_path / "empty", download_missing=False)


def test_root_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("METAGYM_DATA", str(tmp_path / "env"))
    assert og.data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert og.data_root() == tmp_path / "env"
    monkeypatch.delenv("METAGYM_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert og.candidate_dirs() == [
        tmp_path / "cache" / "metagym" / "omniglot",
        tmp_path / "cache" / "metagym",
    ]


def test_corrupt_and_truncated_npz_files_are_refused(served, tmp_path):
    url, md5 = served
    good = og.ensure_omniglot(tmp_path / "good", base_url=url, zip_md5=md5)
    for damage in ("flip", "truncate"):
        bad = tmp_path / damage
        shutil.copytree(good, bad)
        path = bad / "omniglot_evaluation.npz"
        data = bytearray(path.read_bytes())
        if damage == "flip":
            data[len(data) // 2] ^= 0xFF
        else:
            data = data[: len(data) // 2]
        path.write_bytes(bytes(data))
        with pytest.raises(og.ChecksumError, match="corrupt, truncated"):
            og.load_omniglot(bad, download_missing=False)


def test_the_shared_files_match_their_published_checksums(omniglot_root):
    folder = og.find_omniglot(omniglot_root)
    for split in og.SPLITS:
        assert og.verify_npz(folder / og.npz_name(split), split) == og.NPZ_SHA256[split]


def test_resize_is_area_averaging():
    image = np.array([[1, 1, 0, 0], [1, 1, 0, 1], [0, 0, 1, 1], [0, 0, 0, 1]], dtype=np.uint8)
    out = og.resize_area(image[None], 2)
    assert out.dtype == torch.uint8
    # means 1, 1/4, 0, 3/4 -> x255, rounded
    assert out[0].tolist() == [[255, 64], [0, 191]]
