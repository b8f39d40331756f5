"""The CIFAR loaders: official archives and folders (built here in the official format), the compact copy."""

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from swapout.data import files as data
from swapout.data.files import DataError, load_split

SHARED = data.default_data_dir()
HAVE_COMPACT = (SHARED / "cifar10-test.npz").exists()


def _batch(n: int, seed: int, labels_key: bytes = b"labels") -> dict:
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"testing batch", labels_key: rng.integers(0, 10, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}


def _official_archive(tmp_path: Path, monkeypatch, payloads=None) -> Path:
    """A cifar-10-python.tar.gz in the official layout, with the checksum table pointed at it."""
    spec = {**data.ARCHIVES["cifar10"], "train": {}, "test": {}}
    payloads = payloads or {}
    tar_path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for split, names in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
            for name in names:
                raw = payloads.get(name) or pickle.dumps(_batch(20, hash(name) % 1000), protocol=2)
                spec[split][name] = hashlib.md5(raw).hexdigest()
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    spec["md5"] = hashlib.md5(tar_path.read_bytes()).hexdigest()
    monkeypatch.setitem(data.ARCHIVES, "cifar10", spec)
    return tar_path


def test_official_archive_loads(tmp_path, monkeypatch):
    _official_archive(tmp_path, monkeypatch)
    train = load_split("cifar10", "train", tmp_path, download=False)
    test = load_split("cifar10", "test", tmp_path, download=False)
    assert train.images.shape == (100, 32, 32, 3) and train.images.dtype == np.uint8
    assert test.images.shape == (20, 32, 32, 3) and test.exact.all()
    expected = _batch(20, hash("test_batch") % 1000)
    # official layout: 3072 bytes = R plane, G plane, B plane of a 32x32 image
    assert np.array_equal(test.images[3], expected[b"data"][3].reshape(3, 32, 32).transpose(1, 2, 0))
    assert test.labels.tolist() == expected[b"labels"]


def test_extracted_folder_loads_and_is_checked(tmp_path, monkeypatch):
    archive = _official_archive(tmp_path, monkeypatch)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    archive.unlink()
    assert len(load_split("cifar10", "train", tmp_path, download=False)) == 100
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:-10])
    with pytest.raises(DataError, match="data_batch_2.*MD5"):
        load_split("cifar10", "train", tmp_path, download=False)


def test_wrong_checksum_is_refused(tmp_path, monkeypatch):
    archive = _official_archive(tmp_path, monkeypatch)
    monkeypatch.setitem(data.ARCHIVES["cifar10"], "md5", "0" * 32)
    with pytest.raises(DataError, match=f"{archive.name}: MD5 is .*, expected 0{{32}}"):
        load_split("cifar10", "train", tmp_path, download=False)


def test_truncated_archive_is_refused(tmp_path, monkeypatch):
    archive = _official_archive(tmp_path, monkeypatch)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="MD5"):  # caught by the checksum first
        load_split("cifar10", "train", tmp_path, download=False)
    # and by the reader if the checksum were made to match
    monkeypatch.setitem(data.ARCHIVES["cifar10"], "md5", hashlib.md5(archive.read_bytes()).hexdigest())
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_split("cifar10", "train", tmp_path, download=False)


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_that_calls_a_function_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({b"data": _Exploit(marker), b"labels": []}, protocol=2)
    _official_archive(tmp_path, monkeypatch, payloads={"test_batch": evil})
    with pytest.raises(DataError, match="test_batch: refusing to unpickle "):
        load_split("cifar10", "test", tmp_path, download=False)
    assert not marker.exists()
    os_system = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."
    _official_archive(tmp_path, monkeypatch, payloads={"test_batch": os_system})
    with pytest.raises(DataError, match="refusing to unpickle os.system"):
        load_split("cifar10", "test", tmp_path, download=False)


def test_missing_data_without_download(tmp_path):
    with pytest.raises(DataError, match="no cifar10 data"):
        load_split("cifar10", "train", tmp_path, download=False)


@pytest.mark.skipif(not HAVE_COMPACT, reason="the compact lossless copy is not available here")
def test_compact_copy_loads_with_exact_mask():
    test = load_split("cifar10", "test", SHARED)
    assert test.images.shape == (10_000, 32, 32, 3)
    assert int(test.exact.sum()) == 9_980
    assert np.bincount(test.labels, minlength=10).tolist() == [1000] * 10


@pytest.mark.skipif(not HAVE_COMPACT, reason="the compact lossless copy is not available here")
def test_corrupt_compact_copy_is_refused(tmp_path):
    for name in ("cifar10-test.webp", "cifar10-test.npz"):
        (tmp_path / name).write_bytes((SHARED / name).read_bytes())
    with open(tmp_path / "cifar10-test.webp", "r+b") as fh:
        fh.seek(5000)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(DataError, match="cifar10-test.webp: SHA256") as caught:
        load_split("cifar10", "test", tmp_path)
    # the remedy fits the compact copy: there is nothing to download again
    assert "copy the compact folder again" in str(caught.value) and "download" not in str(caught.value)


def test_a_missing_part_of_a_compact_copy_is_named(tmp_path):
    for name in ("cifar10-train.0.webp", "cifar10-train.npz"):  # the second half of the training grid is missing
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(DataError, match=r"cifar10-train\.1\.webp: missing; the compact copy of cifar10-train needs "
                                        r"cifar10-train\.0\.webp, cifar10-train\.1\.webp, cifar10-train\.npz"):
        load_split("cifar10", "train", tmp_path, download=False)
