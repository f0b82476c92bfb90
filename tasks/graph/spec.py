"""What the graph task offers (light: read by `dfabench list` without importing torch)."""
from dfabench.catalog import Metric, TaskSpec

NODE_MODELS = {
    "gcn": "GCN, 16 hidden (Kipf and Welling 2017)",
    "cheb": "ChebConv K=2, 16 hidden (Defferrard et al. 2016)",
    "gat": "GAT, 8 heads x 8 hidden (Velickovic et al. 2018)",
    "sage": "GraphSAGE mean aggregation, 16 hidden (beyond the paper)",
}

SPEC = TaskSpec(
    domain="graph",
    entry_point="dfabench.tasks.graph.task:GraphTask",
    datasets={
        "csbm": "contextual stochastic block model of Cora's size: 2,708 nodes, 7 classes, homophily 0.8",
        "fmnist-knn": "kNN graph (k=10) over 3,000 real Fashion-MNIST images, 10 classes (Debian package)",
        "cora": "Planetoid Cora, public split (official: root or download=true)",
        "citeseer": "Planetoid CiteSeer, public split (official)",
        "pubmed": "Planetoid PubMed, public split (official)",
        "custom": "your own graph: --set path=graph.pt or a directory (see tasks/graph/README.md)",
    },
    models={**NODE_MODELS, "gae": "graph autoencoder, GCN encoder 32 -> 16, link prediction (AUC, AP)"},
    metrics=(Metric("accuracy", True), Metric("auc", True), Metric("ap", True), Metric("loss", False)),
    primary_metric="accuracy",
    primary_by_model={"gae": "auc"},
    explicit_datasets=frozenset({"cora", "citeseer", "pubmed", "custom"}),
    # drtp recovers a one-hot target from a softmax cross-entropy; the GAE's loss is a BCE on edges
    excluded={("gae", "drtp"): "drtp needs a softmax cross-entropy over classes; the GAE's loss is a binary one "
                               "on edges"},
    requires=("torch", "torch_geometric"),
    extra="graph",
    data={"fmnist-knn": ("fashion-mnist",), **{d: ("your-files",) for d in ("cora", "citeseer", "pubmed", "custom")}},
)
