"""Image data for the vision task: shared grey-scale sets plus official CIFAR-10 pickle batches."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from dfabench.data.images import ImageSet, load_images

__all__ = ["load_cifar10", "load_vision", "ImageSet"]


def _read_batch(path: Path):
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    x = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    y = np.asarray(batch[b"labels"], dtype=np.int64)
    return x, y


def load_cifar10(data_dir: str | None) -> ImageSet:
    """Official CIFAR-10 python batches (data_batch_1..5, test_batch) from a user-given directory."""
    if not data_dir:
        raise FileNotFoundError("cifar10 needs data_dir (the cifar-10-batches-py directory)")
    root = Path(data_dir)
    parts = [_read_batch(root / f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = _read_batch(root / "test_batch")
    return ImageSet(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                    test_x, test_y, "cifar10")


def load_vision(name: str, data_dir: str | None = None) -> ImageSet:
    if name == "cifar10":
        return load_cifar10(data_dir)
    return load_images(name, data_dir)
