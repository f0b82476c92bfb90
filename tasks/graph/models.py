"""Two-layer graph networks on torch-geometric's layers, with one feedback point after the hidden
activation (as in the paper), and a GAE whose GCN encoder (32 -> 16) has its point likewise."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import ChebConv, GATConv, GCNConv, SAGEConv

from dfabench.engine import FeedbackPoint


class NodeClassifier(nn.Module):
    """conv -> activation -> FeedbackPoint -> dropout -> conv -> class logits (the output DFA sees)."""

    def __init__(self, kind: str, inputs: int, hidden: int, classes: int, dropout: float, heads: int = 8,
                 cheb_k: int = 2):
        super().__init__()
        self.dropout = dropout
        if kind == "gcn":
            self.conv1, self.conv2 = GCNConv(inputs, hidden), GCNConv(hidden, classes)
        elif kind == "cheb":
            self.conv1, self.conv2 = ChebConv(inputs, hidden, K=cheb_k), ChebConv(hidden, classes, K=cheb_k)
        elif kind == "gat":  # hidden per head; the paper's 8 heads x 8, one averaged output head
            self.conv1 = GATConv(inputs, hidden, heads=heads, dropout=dropout)
            self.conv2 = GATConv(hidden * heads, classes, heads=1, dropout=dropout)
        elif kind == "sage":
            self.conv1, self.conv2 = SAGEConv(inputs, hidden), SAGEConv(hidden, classes)
        else:
            raise ValueError(f"unknown graph model {kind!r}")
        self.activation = F.elu if kind == "gat" else F.relu
        self.point = FeedbackPoint()

    def forward(self, data) -> torch.Tensor:
        x = F.dropout(data.x, self.dropout, self.training)
        h = self.point(self.activation(self.conv1(x, data.edge_index)))
        h = F.dropout(h, self.dropout, self.training)
        return self.conv2(h, data.edge_index)


class GAE(nn.Module):
    """Graph autoencoder (Kipf and Welling 2016): GCN encoder 32 -> 16; inner-product decoder in the loss.

    The encoder's output, the node embeddings z, is what DFA takes the error at."""

    def __init__(self, inputs: int, hidden: int = 32, embedding: int = 16):
        super().__init__()
        self.conv1, self.conv2 = GCNConv(inputs, hidden), GCNConv(hidden, embedding)
        self.point = FeedbackPoint()

    def forward(self, data) -> torch.Tensor:
        h = self.point(F.relu(self.conv1(data.x, data.edge_index)))
        return self.conv2(h, data.edge_index)

    @staticmethod
    def score(z: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        """Logits of the edges (2 x E): the inner product of their ends' embeddings."""
        return (z[edges[0]] * z[edges[1]]).sum(-1)
