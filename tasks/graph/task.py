"""The `graph` task: the paper's geometric-learning tables (node classification and a GAE).

Node classification: ``gcn``, ``cheb`` (ChebConv, K=2), ``gat`` (8 heads x 8) and ``sage`` (GraphSAGE,
beyond the paper), full batch, cross-entropy on the training nodes, test accuracy at the best
validation accuracy. Graph embedding: ``gae`` (GCN encoder 32 -> 16), link prediction on held-out
edges, test AUC (primary) and AP. Datasets in ``data.py``; official Planetoid graphs run only when
named (``graph/cora/gcn``), never through a glob.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
# Imported here, not on first use: a first import may draw from Python's `random`, which would make a
# run's negative samples depend on what ran before it in the same process.
from sklearn.metrics import average_precision_score, roc_auc_score
from torch_geometric.data import Data
from torch_geometric.transforms import RandomLinkSplit
from torch_geometric.utils import negative_sampling

from dfabench.task import floor
from dfabench.task import Task, TrainHParams, register_task, tensor_fingerprint

from . import data as graphs
from .models import GAE, NodeClassifier


class GraphHParams(TrainHParams):
    hidden: int = Field(16, ge=1, description="hidden units (per head for gat)")
    heads: int = Field(8, ge=1)
    dropout: float = Field(0.5, ge=0, lt=1)
    # csbm
    nodes: int = Field(2708, ge=20)
    homophily: float = Field(0.8, ge=0, le=1)
    noise: float = Field(0.45, ge=0)
    # fmnist-knn
    knn: int = Field(10, ge=1)
    # official and user graphs
    root: str | None = Field(None, description="Planetoid root directory (default ~/.cache/dfabench/planetoid)")
    download: bool = Field(False, description="let Planetoid download its files if root lacks them")
    path: str | None = Field(None, description="custom: a saved Data (.pt) or a directory of edges/features/labels")
    objective: Literal["nodes", "links"] = Field("nodes", description="links: link prediction (set for gae)")
    # links: fractions of edges held out for validation and test
    val_edges: float = Field(0.05, gt=0, lt=0.5)
    test_edges: float = Field(0.1, gt=0, lt=0.5)


@dataclass
class GraphData:
    graph: Data  # on the run's device; for gae, edge_index holds the training edges only
    classes: int
    links: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None  # split -> (edges, labels) for gae


@functools.lru_cache(maxsize=8)
def _graph(dataset: str, nodes: int, homophily: float, noise: float, knn: int, root: str | None, download: bool,
           path: str | None) -> Data:
    if dataset == "csbm":
        return graphs.csbm(nodes=nodes, homophily=homophily, noise=noise)
    if dataset == "fmnist-knn":
        return graphs.fmnist_knn(knn=knn)
    if dataset in graphs.PLANETOID:
        return graphs.planetoid(dataset, root, download)
    return graphs.custom(path, seed=0)


@register_task
class GraphTask(Task):
    domain = "graph"
    HParams = GraphHParams  # datasets, models, metrics: tasks/graph/spec.py
    # what changes the graph itself; the pre-flight check loads each distinct one once
    data_options = frozenset({"nodes", "homophily", "noise", "knn", "root", "download", "path"})

    def load_data(self, dataset, hp: GraphHParams, seed, scale, device) -> GraphData:
        try:
            graph = _graph(dataset, hp.nodes, hp.homophily, hp.noise, hp.knn, hp.root, hp.download, hp.path)
        except graphs.GraphDataError as err:
            from dfabench.hparams import ConfigError

            raise ConfigError(str(err)) from None
        classes = int(graph.y.max()) + 1
        if hp.objective == "nodes":
            return GraphData(graph.to(device), classes)
        split = RandomLinkSplit(num_val=hp.val_edges, num_test=hp.test_edges, is_undirected=True,
                                add_negative_train_samples=False)
        with torch.random.fork_rng():  # the split draws from the global generator: pin it to the seed
            torch.manual_seed(seed)
            train, val, test = split(graph.clone())
        links = {name: (part.edge_label_index.to(device), part.edge_label.to(device))
                 for name, part in (("val", val), ("test", test))}
        return GraphData(train.to(device), classes, links)

    def build_model(self, model, hp: GraphHParams, data: GraphData):
        inputs = data.graph.num_features
        if model == "gae":
            return GAE(inputs, hp.hidden, 16)
        return NodeClassifier(model, inputs, hp.hidden, data.classes, hp.dropout, hp.heads)

    def train_batches(self, data: GraphData, hp, generator):
        yield data.graph  # full batch: one optimiser step per epoch

    def forward(self, model, batch):
        return model(batch)

    def loss(self, output, batch, model, hp: GraphHParams):
        if hp.objective == "nodes":
            return F.cross_entropy(output[batch.train_mask], batch.y[batch.train_mask])
        positive = batch.edge_label_index
        negative = negative_sampling(batch.edge_index, num_nodes=batch.num_nodes, num_neg_samples=positive.size(1))
        pos_logits, neg_logits = GAE.score(output, positive), GAE.score(output, negative)
        return (F.binary_cross_entropy_with_logits(pos_logits, torch.ones_like(pos_logits))
                + F.binary_cross_entropy_with_logits(neg_logits, torch.zeros_like(neg_logits)))

    def evaluate(self, model, data: GraphData, split, hp: GraphHParams):
        g = data.graph
        if hp.objective == "links":
            edges, labels = data.links[split]
            logits = GAE.score(model(g), edges)
            y, p = labels.cpu().numpy(), torch.sigmoid(logits).cpu().numpy()
            return {"auc": float(roc_auc_score(y, p)), "ap": float(average_precision_score(y, p)),
                    "loss": float(F.binary_cross_entropy_with_logits(logits, labels.float()))}
        logits = model(g)
        mask = getattr(g, f"{split}_mask")
        return {"accuracy": float((logits[mask].argmax(1) == g.y[mask]).float().mean()),
                "loss": float(F.cross_entropy(logits[mask], g.y[mask]))}

    def fingerprint(self, data: GraphData) -> str:
        g = data.graph
        return tensor_fingerprint(g.x, g.edge_index, g.y)

    def extras(self, model, data: GraphData, hp: GraphHParams, run_dir):
        if hp.objective == "links":
            return {}  # the gate's AUC floor of 0.5 applies to every AUC
        return {"floors": {"accuracy": floor(1.0 / data.classes, "chance")}}
