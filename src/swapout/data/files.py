"""CIFAR-10 and CIFAR-100, read safely from any of their usual forms.

Sources, tried in this order inside a data directory:

1. a compact lossless copy: ``NAME.npz`` label archives plus WebP tile grids (``NAME.webp`` or
   ``NAME.0.webp`` and ``NAME.1.webp``), NAME one of ``cifar10-train``, ``cifar10-test``,
   ``cifar100-train``, ``cifar100-test``; each file is checked against its SHA-256;
2. the official python folders ``cifar-10-batches-py`` / ``cifar-100-python``, each batch checked
   against its published MD5;
3. the official archives ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``, checked against
   their published MD5 and read without being extracted to disk;
4. otherwise the official archive is downloaded (with a progress bar) when the network allows.

The official batches are pickles. They are read with an unpickler that allows only what those files
hold (dicts, lists, bytes, strings, numbers and numpy arrays) and refuses anything else, so a
tampered file cannot run code. A truncated, corrupt or wrong file raises `DataError` naming
the file and what was expected.

In the compact copy, twenty CIFAR-10 test images are approximate (recovered from a JPEG copy);
`Split.exact` marks the 9,980 exact ones, and evaluation uses only those.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import sys
import tarfile
import time
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Optional, Tuple, Union

import numpy as np

from .cifar import DATASETS, MEAN, NUM_CLASSES, SPLIT_SIZES, STD, DataError, Split, check_digest

__all__ = ["DataError", "Split", "load_split", "load_cifar", "default_data_dir", "DATASETS", "NUM_CLASSES",
           "MEAN", "STD", "SPLIT_SIZES", "check_digest"]

# Published by the dataset's authors (https://www.cs.toronto.edu/~kriz/cifar.html) and widely mirrored.
ARCHIVES: Dict[str, Dict[str, Any]] = {
    "cifar10": {"file": "cifar-10-python.tar.gz", "md5": "c58f30108f718f92721af3b95e74349a",
                "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "folder": "cifar-10-batches-py",
                "train": {f"data_batch_{i}": md5 for i, md5 in enumerate(
                    ["c99cafc152244af753f735de768cd75f", "d4bba439e000b95fd0a9bffe97cbabec",
                     "54ebc095f3ab1f0389bbae665268c751", "634d18415352ddfa80567beed471001a",
                     "482c414d41f54cd18b22e5b47cb7c3cb"], start=1)},
                "test": {"test_batch": "40351d587109b95175f43aff81a1287e"}, "labels": b"labels"},
    "cifar100": {"file": "cifar-100-python.tar.gz", "md5": "eb9058c3a382ffc7106e4002c42a8d85",
                 "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "folder": "cifar-100-python",
                 "train": {"train": "16019d7e3df5f24257cddd939b257f8d"},
                 "test": {"test": "f0ef6b0ae62326f3e7ffdfab6717acfc"}, "labels": b"fine_labels"},
}

def default_data_dir() -> Path:
    """``$SWAPOUT_DATA``; else ``../shared/data`` beside a source checkout, if it exists; else the cache.

    Returns:
        The folder to read the data from: ``$SWAPOUT_DATA`` if set; ``../shared/data`` beside a source checkout
        if it holds ``cifar10-train.npz``; else ``swapout/data`` in ``$XDG_CACHE_HOME`` (``~/.cache`` if unset).
    """
    if os.environ.get("SWAPOUT_DATA"):
        return Path(os.environ["SWAPOUT_DATA"])
    beside_checkout = Path(__file__).resolve().parents[4] / "shared" / "data"
    if (beside_checkout / "cifar10-train.npz").exists():
        return beside_checkout
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "swapout" / "data"


# -- the official pickles ------------------------------------------------------------------------------

# What a pickled numpy array needs, and nothing more (_codecs.encode rebuilds bytes in protocol 2).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Builds only plain containers, numbers, strings and numpy arrays; refuses every other global."""

    def __init__(self, fh: BinaryIO, name: str) -> None:
        super().__init__(fh, encoding="bytes")
        self.name = name

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise DataError(f"{self.name}: refusing to unpickle {module}.{name}; a CIFAR batch holds only "
                        f"dicts, lists, strings, numbers and numpy arrays")


def _read_batch(data: bytes, name: str, labels_key: bytes) -> Tuple[np.ndarray, np.ndarray]:
    try:
        batch = _SafeUnpickler(io.BytesIO(data), name).load()
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"{name}: not a readable CIFAR batch ({type(err).__name__}: {err})") from None
    if not isinstance(batch, dict) or b"data" not in batch or labels_key not in batch:
        raise DataError(f"{name}: expected a dict with b'data' and {labels_key!r}")
    images, labels = np.asarray(batch[b"data"]), np.asarray(batch[labels_key])
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072 or len(labels) != len(images):
        raise DataError(f"{name}: expected uint8 data of shape (N, 3072) and N labels, got {images.dtype} "
                        f"{images.shape} and {len(labels)} labels")
    return images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


def _from_batches(dataset: str, split: str, read: Callable[[str, str], bytes], source: str) -> Split:
    spec = ARCHIVES[dataset]
    parts = [_read_batch(read(name, md5), name, spec["labels"]) for name, md5 in spec[split].items()]
    images = np.ascontiguousarray(np.concatenate([p[0] for p in parts]))
    labels = np.concatenate([p[1] for p in parts])
    return Split(images, labels, np.ones(len(labels), dtype=bool), source)


def _from_folder(dataset: str, split: str, folder: Path) -> Split:
    def read(name: str, md5: str) -> bytes:
        path = folder / name
        if not path.exists():
            raise DataError(f"{path}: missing; expected the official batch file")
        check_digest(path, md5, "md5")
        return path.read_bytes()

    return _from_batches(dataset, split, read, str(folder))


def _from_archive(dataset: str, split: str, archive: Path) -> Split:
    spec = ARCHIVES[dataset]
    check_digest(archive, spec["md5"], "md5")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            def read(name: str, md5: str) -> bytes:
                member = f"{spec['folder']}/{name}"
                try:
                    fh = tar.extractfile(member)  # None for a member that is not a file
                except KeyError:
                    fh = None
                if fh is None:
                    raise DataError(f"{archive}: no {member} inside; expected the official archive layout")
                data = fh.read()
                if hashlib.md5(data).hexdigest() != md5:
                    raise DataError(f"{archive}: {member} has the wrong MD5; expected {md5}")
                return data

            return _from_batches(dataset, split, read, str(archive))
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"{archive}: cannot be read as a gzipped tar archive ({err}); it is truncated or "
                        f"corrupt; delete it and download it again") from None


def _download(url: str, target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file in its place or on its path, or no right to create it
        raise DataError(f"{target.parent}: cannot be made a data folder ({err.strerror}); point --data-dir (or "
                        f"SWAPOUT_DATA) at a folder that has the data or can hold it") from None
    tmp = target.with_suffix(target.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done, start = 0, time.time()
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                done += len(block)
                rate = done / max(time.time() - start, 1e-9) / 2**20
                share = f"{100 * done / total:5.1f}% of {total / 2**20:.0f} MB" if total else f"{done / 2**20:.0f} MB"
                print(f"\rdownloading {target.name}: {share}, {rate:.1f} MB/s", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{target}: missing, and downloading {url} failed ({err}); put the official archive "
                        f"there, or point --data-dir (or SWAPOUT_DATA) at a folder that has the data") from None


def load_split(dataset: str, split: str, data_dir: Optional[Union[str, os.PathLike[str]]] = None, download: bool = True,
               verify: bool = True) -> Split:
    """Load one split of CIFAR-10 or CIFAR-100.

    Args:
        dataset: ``"cifar10"`` or ``"cifar100"``.
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000).
        data_dir: folder with the data in one of the forms above; `default_data_dir` if None.
        download: fetch the official archive when no form is present.
        verify: check every file against its published checksum.

    Returns:
        The split, images uint8 ``(N, 32, 32, 3)`` RGB and labels int64 ``(N,)``.

    Raises:
        DataError: for an unknown dataset or split, data that is missing (and not downloaded, or not
            downloadable), or a file that is truncated, corrupt, unsafe or fails its checksum.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLIT_SIZES:
        raise DataError(f"unknown split {split!r}; choose 'train' or 'test'")
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    spec = ARCHIVES[dataset]
    if (data_dir / f"{dataset}-{split}.npz").exists():
        from .compact import read_compact

        return read_compact(dataset, split, data_dir, verify)
    if (data_dir / spec["folder"]).is_dir():
        return _from_folder(dataset, split, data_dir / spec["folder"])
    archive = data_dir / spec["file"]
    if not archive.exists():
        if not download:
            raise DataError(f"{data_dir}: no {dataset} data (expected {dataset}-{split}.npz, {spec['folder']}/ "
                            f"or {spec['file']})")
        _download(spec["url"], archive)
    return _from_archive(dataset, split, archive)


def load_cifar(dataset: str, data_dir: Optional[Union[str, os.PathLike[str]]] = None,
               download: bool = True) -> Dict[str, Split]:
    """Both splits of a dataset: ``{"train": Split, "test": Split}``.

    Args:
        dataset: ``"cifar10"`` or ``"cifar100"``.
        data_dir: folder with the data in one of the forms above; `default_data_dir` if None.
        download: fetch the official archive when no form is present.

    Returns:
        ``{"train": Split, "test": Split}``, as `load_split` reads them.

    Raises:
        DataError: as `load_split`, for an unknown dataset or missing or bad data.
    """
    return {split: load_split(dataset, split, data_dir, download) for split in ("train", "test")}
