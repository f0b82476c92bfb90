"""A user's graph as files: features, labels and an edge list, in CSV or NPY, read with checks.

A folder holds ``features.csv`` or ``features.npy`` (one row of numbers per node, in node order),
``labels.csv`` or ``labels.npy`` (one integer class per node: a single column in node order, or two
columns ``node,label`` with every node exactly once) and ``edges.csv`` (two integer columns, source
and target; commas, tabs or spaces). Every CSV may start with a header row (``src,dst``); it is
recognised because it is not numbers. Everything a reader can tell is wrong is refused with one line
naming the file and the line: wrong column counts, non-numbers, node ids out of range or negative,
a node without a label or with two, fewer labels than nodes, an empty file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dfabench.errors import DataError


def find(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    hits = [folder / f"{stem}{s}" for s in suffixes if (folder / f"{stem}{s}").is_file()]
    if len(hits) > 1:
        raise DataError(f"custom: {folder} has both {hits[0].name} and {hits[1].name}; keep one")
    return hits[0] if hits else None


def read_table(path: Path, columns: int | tuple[int, ...] | None = None) -> tuple[np.ndarray, int]:
    """The numbers of a CSV (header row optional) as a float array, and the file line of its first
    row (2 with a header): errors name the line."""
    try:
        frame = pd.read_csv(path, header=None, sep=_separator(path), engine="python", dtype=str,
                            skip_blank_lines=True, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except (pd.errors.ParserError, ValueError) as err:
        raise DataError(f"{path}: cannot parse as CSV ({str(err).splitlines()[0]})") from None
    first = 1
    if len(frame) and pd.to_numeric(frame.iloc[0], errors="coerce").isna().any():
        frame, first = frame.iloc[1:], 2  # a header row such as 'src,dst'
    if frame.empty:
        raise DataError(f"{path}: no rows")
    allowed = (columns,) if isinstance(columns, int) else columns
    if allowed and frame.shape[1] not in allowed:
        raise DataError(f"{path}: {frame.shape[1]} columns, expected {' or '.join(map(str, allowed))}")
    values = frame.apply(pd.to_numeric, errors="coerce")
    bad = values.isna().any(axis=1).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}: line {first + row}: not a number in {','.join(frame.iloc[row].fillna('').astype(str))!r}")
    return values.to_numpy(dtype=np.float64), first


def _separator(path: Path) -> str:
    """Commas, else tabs, else runs of spaces, judged on the first line (a sniffer guesses letters of
    a one-column header as separators)."""
    with open(path, "rb") as f:
        line = f.readline()
    return "," if b"," in line else "\t" if b"\t" in line else r"\s+"


def read_array(path: Path) -> tuple[np.ndarray, int]:
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise DataError(f"{path}: not a NumPy array file ({str(err).splitlines()[0]})") from None
        if not np.issubdtype(array.dtype, np.number):
            raise DataError(f"{path}: holds {array.dtype} values, not numbers")
        return array.astype(np.float64), 1
    return read_table(path)


def integers(values: np.ndarray, path: Path, first: int, what: str) -> np.ndarray:
    whole = np.isfinite(values) & (values == np.round(values))
    if not whole.all():
        row = int(np.argmax(~whole.reshape(len(values), -1).all(axis=1)))
        raise DataError(f"{path}: line {first + row}: {what} must be whole numbers")
    return values.astype(np.int64)


def check_ids(ids: np.ndarray, n: int, path: Path, first: int, what: str) -> None:
    bad = (ids < 0) | (ids >= n)
    if bad.any():
        row = int(np.argmax(bad.reshape(len(ids), -1).any(axis=1)))
        value = ids.reshape(len(ids), -1)[row][bad.reshape(len(ids), -1)[row]][0]
        raise DataError(f"{path}: line {first + row}: {what} {value} is out of range (nodes are 0..{n - 1})")


def read_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features n x f float32, labels n int64, edges 2 x m int64) of a user's graph folder."""
    features_path = find(folder, "features", (".npy", ".csv"))
    labels_path = find(folder, "labels", (".npy", ".csv"))
    edges_path = find(folder, "edges", (".csv", ".tsv", ".txt"))
    missing = [name for name, p in (("features.csv or .npy", features_path), ("labels.csv or .npy", labels_path),
                                    ("edges.csv", edges_path)) if p is None]
    if missing:
        raise DataError(f"custom: {folder} lacks {', '.join(missing)}")

    x, first = read_array(features_path)
    if x.ndim != 2 or len(x) == 0:
        raise DataError(f"{features_path}: expected one row of features per node, got shape {x.shape}")
    if not np.isfinite(x).all():
        row = int(np.argmax(~np.isfinite(x).all(axis=1)))
        raise DataError(f"{features_path}: line {first + row}: a feature is NaN or infinite")
    n = len(x)

    raw, first = read_array(labels_path)
    raw = raw.reshape(-1, 1) if raw.ndim == 1 else raw
    if raw.ndim != 2 or raw.shape[1] not in (1, 2):
        raise DataError(f"{labels_path}: expected one label per node (one column, or two: node,label)")
    raw = integers(raw, labels_path, first, "labels and node ids")
    if raw.shape[1] == 2:  # node,label pairs: every node exactly once
        nodes = raw[:, 0]
        check_ids(nodes, n, labels_path, first, "node id")
        seen, where = np.unique(nodes, return_index=True)
        if len(seen) < len(nodes):
            dup = np.setdiff1d(np.arange(len(nodes)), where)[0]
            raise DataError(f"{labels_path}: line {first + dup}: node {nodes[dup]} has a second label")
        if len(seen) < n:
            lacking = np.setdiff1d(np.arange(n), seen)[0]
            raise DataError(f"{labels_path}: node {lacking} has no label ({n} nodes in {features_path.name}, "
                            f"{len(seen)} labelled)")
        y = np.empty(n, np.int64)
        y[nodes] = raw[:, 1]
    else:
        if len(raw) != n:
            raise DataError(f"{labels_path}: {len(raw)} labels for {n} nodes ({features_path.name} has {n} rows): "
                            "one label per node")
        y = raw[:, 0]
    if (y < 0).any():
        raise DataError(f"{labels_path}: labels must be classes 0..C-1; found {int(y.min())}")
    if len(np.unique(y)) < 2:
        raise DataError(f"{labels_path}: every node has the same label: nothing to classify")

    if edges_path.suffix == ".npy":  # pragma: no cover - find() looks for text edge lists only
        raise DataError(f"{edges_path}: edges must be a text edge list")
    e, first = read_table(edges_path, columns=2)
    edges = integers(e, edges_path, first, "node ids")
    check_ids(edges, n, edges_path, first, "node id")
    return x.astype(np.float32), y, edges.T.copy()
