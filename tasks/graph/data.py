"""Graphs for the `graph` task: offline synthetic and image graphs, Planetoid, and a user's own graph.

Every loader returns a torch_geometric ``Data`` with ``x``, ``edge_index`` (undirected: both
directions), ``y`` and boolean ``train_mask`` / ``val_mask`` / ``test_mask``.

* ``csbm``: a contextual stochastic block model (Deshpande et al. 2018) of Cora's size: 2,708 nodes,
  7 classes, about 5,300 undirected edges (mean degree ``degree`` = 3.9). An edge joins two nodes of
  the same class with probability ``homophily`` (0.8: Cora's edge homophily is 0.81), else two
  nodes of different classes. Node features are ``mu_y + eps`` in ``feature_dim`` = 256 dims: class
  means of norm ``signal`` (1.0), isotropic Gaussian noise of std ``noise`` (0.45) per dimension.
  Features alone separate the classes only partly: a logistic regression on the 140 training nodes'
  features scores about 0.45 on the test nodes, one on features averaged over two hops about 0.9, so
  aggregating over neighbours is what the graph models must learn.
* ``fmnist-knn``: 3,000 real Fashion-MNIST test images (10 real classes), PCA to 64 dims, each joined
  to its ``knn`` = 10 nearest neighbours (symmetrised). Needs Debian's dataset-fashion-mnist.
* ``cora`` / ``citeseer`` / ``pubmed``: torch_geometric's Planetoid with the public split, read from
  ``root`` (default ``~/.cache/dfabench/planetoid``); downloaded only with ``download=true``.
* ``custom``: ``path`` is either a saved ``Data`` (``torch.save(data, 'graph.pt')``) or a directory
  with ``edges.csv`` (two integer columns: source, target; a header row optional), ``features.csv``
  or ``.npy`` (nodes x features) and ``labels.csv`` or ``.npy`` (one label per node), read and
  checked by ``files.py``. Missing masks are drawn as Planetoid does: 20 training nodes
  per class, 500 validation, 1,000 test (fewer on small graphs: at most a third of the nodes train),
  from a fixed seed.

Splits of the synthetic graphs follow the same Planetoid recipe, from a fixed seed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected

from dfabench.errors import DataError

from .files import read_folder

PLANETOID = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}
DEFAULT_ROOT = Path.home() / ".cache" / "dfabench" / "planetoid"


class GraphDataError(DataError):
    """The user's graph (or an official one) is missing or wrong: refused before anything trains."""


def planetoid_split(y: torch.Tensor, seed: int, per_class: int = 20, n_val: int = 500, n_test: int = 1000):
    """Boolean train/val/test masks: ``per_class`` training nodes per class, then val and test."""
    generator = torch.Generator().manual_seed(seed)
    n = len(y)
    classes = y.unique()
    per_class = min(per_class, max(1, n // (3 * len(classes))))  # small graphs keep nodes to test on
    order = torch.randperm(n, generator=generator)
    train = torch.zeros(n, dtype=torch.bool)
    for c in classes:
        members = order[y[order] == c][:per_class]
        train[members] = True
    rest = order[~train[order]]
    n_val = min(n_val, len(rest) // 3)
    n_test = min(n_test, len(rest) - n_val)
    val, test = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    val[rest[:n_val]] = True
    test[rest[n_val:n_val + n_test]] = True
    return train, val, test


def csbm(nodes: int = 2708, classes: int = 7, degree: float = 3.9, homophily: float = 0.8,
         feature_dim: int = 256, signal: float = 1.0, noise: float = 0.45, seed: int = 0) -> Data:
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (nodes,), generator=generator)
    n_edges = int(round(degree * nodes / 2))
    # Each edge: a uniform source; its target drawn from the source's class with probability
    # `homophily`, else from one of the other classes.
    src = torch.randint(0, nodes, (n_edges,), generator=generator)
    same = torch.rand(n_edges, generator=generator) < homophily
    shift = 1 + torch.randint(0, classes - 1, (n_edges,), generator=generator)
    target_class = torch.where(same, y[src], (y[src] + shift) % classes)
    members = torch.argsort(y, stable=True)  # node ids grouped by class
    counts = torch.bincount(y, minlength=classes)
    offsets = torch.cumsum(counts, 0) - counts
    pick = (torch.rand(n_edges, generator=generator) * counts[target_class]).long()
    dst = members[offsets[target_class] + pick]
    keep = src != dst
    edge_index = to_undirected(torch.stack([src[keep], dst[keep]]), num_nodes=nodes)
    # Class means of norm `signal`; isotropic noise of std `noise` per dimension.
    means = torch.randn(classes, feature_dim, generator=generator)
    means = signal * means / means.norm(dim=1, keepdim=True)
    x = means[y] + noise * torch.randn(nodes, feature_dim, generator=generator)
    return _with_split(Data(x=x, edge_index=edge_index, y=y), seed)


def fmnist_knn(nodes: int = 3000, knn: int = 10, components: int = 64) -> Data:
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    from dfabench.data.images import load_images

    try:
        images = load_images("fashion-mnist", None)
    except Exception as err:  # noqa: BLE001 - the loader's own message says what to install
        raise GraphDataError(f"fmnist-knn needs Fashion-MNIST: {err}") from None
    pixels = images.test_x[:nodes].reshape(nodes, -1).astype(np.float32) / 255.0
    features = PCA(n_components=components, random_state=0).fit_transform(pixels).astype(np.float32)
    _, neighbours = NearestNeighbors(n_neighbors=knn + 1).fit(features).kneighbors(features)
    src = np.repeat(np.arange(nodes), knn)
    dst = neighbours[:, 1:].reshape(-1)
    edge_index = to_undirected(torch.from_numpy(np.stack([src, dst])).long(), num_nodes=nodes)
    y = torch.from_numpy(images.test_y[:nodes].astype(np.int64))
    return _with_split(Data(x=torch.from_numpy(features), edge_index=edge_index, y=y), 0)


def planetoid(name: str, root: str | None, download: bool) -> Data:
    from torch_geometric.datasets import Planetoid

    root_path = Path(root).expanduser() if root else DEFAULT_ROOT
    raw = root_path / PLANETOID[name] / "raw"
    if not download and not raw.is_dir():
        raise GraphDataError(
            f"{name}: no Planetoid files under {raw}; point root at an existing copy (--set root=DIR) or "
            f"let it download once (--set download=true)")
    return Planetoid(str(root_path), PLANETOID[name], split="public")[0]


def custom(path: str | None, seed: int) -> Data:
    if not path:
        raise GraphDataError("custom: set path to a saved torch_geometric Data (.pt) or a directory with "
                             "edges.csv, features.npy and labels.npy (--set path=...)")
    p = Path(path).expanduser()
    if p.is_file():
        try:
            data = torch.load(p, weights_only=False)
        except Exception as err:  # noqa: BLE001 - whatever torch says, the file is not a saved graph
            raise GraphDataError(f"custom: {p} is not a saved torch_geometric Data ({type(err).__name__})") from None
        if not isinstance(data, Data):
            raise GraphDataError(f"custom: {p} holds a {type(data).__name__}, not a torch_geometric Data")
        _check_saved(data, p)
    elif p.is_dir():
        x, y, edges = read_folder(p)  # checked: one line naming the file and line for what is wrong
        data = Data(x=torch.from_numpy(x), edge_index=to_undirected(torch.from_numpy(edges), num_nodes=len(x)),
                    y=torch.from_numpy(y))
    else:
        raise GraphDataError(f"custom: {p} does not exist")
    if getattr(data, "train_mask", None) is None:
        data = _with_split(data, seed)
    return data


def _check_saved(data: Data, path: Path) -> None:
    """What a saved Data must hold for the graph models: features, a label per node, ids in range."""
    for name in ("x", "y", "edge_index"):
        if getattr(data, name, None) is None:
            raise GraphDataError(f"custom: {path} has no {name}")
    n = data.x.shape[0]
    if data.y.shape[0] != n:
        raise GraphDataError(f"custom: {path}: {data.y.shape[0]} labels for {n} nodes: one label per node")
    if data.edge_index.numel() and (int(data.edge_index.min()) < 0 or int(data.edge_index.max()) >= n):
        raise GraphDataError(f"custom: {path}: edge_index holds node ids outside 0..{n - 1}")


def _with_split(data: Data, seed: int) -> Data:
    data.train_mask, data.val_mask, data.test_mask = planetoid_split(data.y, seed)
    return data
