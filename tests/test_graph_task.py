"""The graph task: Planetoid's own file format, a user's graph, the synthetic graph, and DFA's gradients."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric")
import scipy.sparse as sp  # noqa: E402  (a torch_geometric dependency)

from dfabench.harness.plan import match_cells, plan  # noqa: E402
from dfabench.harness.runner import run_one  # noqa: E402
from dfabench.hparams import ConfigError  # noqa: E402
from dfabench.methods import create  # noqa: E402
from dfabench.tasks.graph import data as graphs  # noqa: E402
from dfabench.tasks.graph.models import GAE, NodeClassifier  # noqa: E402


def write_planetoid_raw(raw, name="cora", classes=3, features=6):
    """The eight ind.<name>.* files in Planetoid's format: pickled scipy/numpy objects and a text index."""
    rng = np.random.default_rng(0)
    # x: the labelled training nodes; allx: every non-test node (the public split's 500 validation
    # nodes follow the training ones, so allx needs at least n_train + 500 rows); tx: the test nodes
    n_train, n_rest, n_test = 6, 504, 4
    allx = sp.csr_matrix(rng.random((n_train + n_rest, features)).astype(np.float32))
    tx = sp.csr_matrix(rng.random((n_test, features)).astype(np.float32))
    labels = rng.integers(0, classes, n_train + n_rest + n_test)
    onehot = np.eye(classes)[labels]
    test_index = list(range(n_train + n_rest, n_train + n_rest + n_test))
    n = n_train + n_rest + n_test
    graph = {i: [(i + 1) % n, (i - 1) % n, (i + 5) % n, (i - 5) % n] for i in range(n)}  # symmetric, as Cora's
    objects = {"x": allx[:n_train], "tx": tx, "allx": allx, "y": onehot[:n_train], "ty": onehot[n_train + n_rest:],
               "ally": onehot[:n_train + n_rest], "graph": graph}
    raw.mkdir(parents=True)
    for key, value in objects.items():
        with open(raw / f"ind.{name}.{key}", "wb") as f:
            pickle.dump(value, f)
    (raw / f"ind.{name}.test.index").write_text("\n".join(map(str, reversed(test_index))) + "\n")
    return n, labels


def test_planetoid_reads_its_own_format_offline(tmp_path):
    n, labels = write_planetoid_raw(tmp_path / "Cora" / "raw")
    data = graphs.planetoid("cora", str(tmp_path), download=False)
    assert data.num_nodes == n and data.num_features == 6
    assert torch.equal(data.y, torch.from_numpy(labels))
    assert (int(data.train_mask.sum()), int(data.val_mask.sum()), int(data.test_mask.sum())) == (6, 500, 4)
    assert data.is_undirected() and data.edge_index.size(1) > 0


def test_planetoid_without_files_asks_before_downloading(tmp_path):
    with pytest.raises(graphs.GraphDataError, match="download=true"):
        graphs.planetoid("citeseer", str(tmp_path), download=False)


def test_official_datasets_run_only_when_named():
    cells = match_cells(["graph/*/gcn"])
    assert "graph/csbm/gcn" in cells and "graph/fmnist-knn/gcn" in cells
    assert not any(c.split("/")[1] in ("cora", "citeseer", "pubmed", "custom") for c in cells)
    assert match_cells(["graph/cora/gcn"]) == ["graph/cora/gcn"]


def test_bring_your_own_graph_as_files_and_as_data(tmp_path):
    rng = np.random.default_rng(1)
    n = 40
    np.save(tmp_path / "features.npy", rng.random((n, 5)).astype(np.float32))
    np.save(tmp_path / "labels.npy", np.arange(n) % 2)
    np.savetxt(tmp_path / "edges.csv", np.array([[i, (i + 2) % n] for i in range(n)]), fmt="%d", delimiter=",")
    data = graphs.custom(str(tmp_path), seed=0)
    assert data.num_nodes == n and data.is_undirected()
    # 40 nodes, 2 classes: 6 training nodes per class (a third of the graph at most), then val and test
    assert (int(data.train_mask.sum()), int(data.val_mask.sum()), int(data.test_mask.sum())) == (12, 9, 19)
    torch.save(data, tmp_path / "graph.pt")
    again = graphs.custom(str(tmp_path / "graph.pt"), seed=0)
    assert torch.equal(again.edge_index, data.edge_index) and torch.equal(again.train_mask, data.train_mask)
    # through the harness: one smoke run on the user's graph
    runs, _ = plan(["graph/custom/gcn"], ["dfa"], "smoke", [0], overrides={"path": str(tmp_path / "graph.pt")})
    record = run_one(runs[0], tmp_path / "results")
    assert record["status"] == "ok" and 0.0 <= record["metrics"]["test"]["accuracy"] <= 1.0


def test_missing_user_graph_is_a_config_error(tmp_path):
    from dfabench.task import all_tasks

    with pytest.raises(ConfigError, match="set path"):  # the planner's pre-flight check
        plan(["graph/custom/gcn"], ["bp"], "smoke", [0])
    runs, _ = plan(["graph/custom/gcn"], ["bp"], "smoke", [0], check_data=False)
    with pytest.raises(ConfigError, match="set path"):
        all_tasks()["graph"].load_data("custom", runs[0].hparams, 0, "smoke", torch.device("cpu"))


def test_csbm_is_deterministic_and_has_the_homophily_asked_for():
    a, b = graphs.csbm(seed=3), graphs.csbm(seed=3)
    assert torch.equal(a.x, b.x) and torch.equal(a.edge_index, b.edge_index)
    assert a.num_nodes == 2708 and int(a.y.max()) == 6
    same = (a.y[a.edge_index[0]] == a.y[a.edge_index[1]]).float().mean()
    assert abs(float(same) - 0.8) < 0.03
    assert (int(a.train_mask.sum()), int(a.val_mask.sum()), int(a.test_mask.sum())) == (140, 500, 1000)
    assert not (a.train_mask & a.test_mask).any() and not (a.val_mask & a.test_mask).any()
    low = graphs.csbm(seed=3, homophily=0.2)
    assert float((low.y[low.edge_index[0]] == low.y[low.edge_index[1]]).float().mean()) < 0.3


@pytest.mark.parametrize("kind", ["gcn", "cheb", "gat", "sage"])
def test_dfa_hidden_gradients_are_not_bp_and_shallow_leaves_them_zero(kind):
    graph = graphs.csbm(nodes=60, feature_dim=8, seed=0)
    grads = {}
    for name in ("bp", "dfa", "shallow"):
        torch.manual_seed(0)
        model = NodeClassifier(kind, 8, 4, 7, dropout=0.0, heads=2)
        method = create(name)
        method.prepare(model, lambda: model(graph), seed=0)
        method.backward(model(graph), lambda out: torch.nn.functional.cross_entropy(out, graph.y))
        grads[name] = {n: p.grad.clone() if p.grad is not None else None for n, p in model.named_parameters()}
    hidden = [n for n in grads["bp"] if n.startswith("conv1")]
    top = [n for n in grads["bp"] if n.startswith("conv2")]
    for n in hidden:
        assert grads["shallow"][n] is None or torch.count_nonzero(grads["shallow"][n]) == 0
    dfa_hidden = torch.cat([grads["dfa"][n].flatten() for n in hidden])
    bp_hidden = torch.cat([grads["bp"][n].flatten() for n in hidden])
    assert torch.count_nonzero(dfa_hidden) > 0 and not torch.allclose(dfa_hidden, bp_hidden)
    for n in top:  # the output layer gets its true gradient under every method
        assert torch.allclose(grads["dfa"][n], grads["bp"][n], atol=1e-6)
        assert torch.allclose(grads["shallow"][n], grads["bp"][n], atol=1e-6)


def test_gae_link_prediction_smoke_run(tmp_path):
    runs, notes = plan(["graph/csbm/gae"], ["bp", "dfa", "drtp"], "smoke", [0])
    assert [r.method for r in runs] == ["bp", "dfa"] and any("drtp does not apply" in n for n in notes)
    record = run_one(runs[1], tmp_path)
    assert record["status"] == "ok" and record["primary_metric"] == "auc"
    assert set(record["metrics"]["test"]) >= {"auc", "ap", "loss"}
    assert 0.0 <= record["metrics"]["test"]["auc"] <= 1.0
    assert record["alignment"] is not None


def test_gae_scores_are_inner_products():
    z = torch.tensor([[1.0, 0.0], [0.5, 2.0], [0.0, 1.0]])
    edges = torch.tensor([[0, 1], [1, 2]])
    assert torch.allclose(GAE.score(z, edges), torch.tensor([0.5, 2.0]))



def test_gae_runs_are_reproducible_from_the_seed(tmp_path):
    # negative sampling draws from Python's `random`: the runner must seed it too
    runs, _ = plan(["graph/csbm/gae"], ["dfa"], "smoke", [1], overrides={"epochs": 10})
    first = run_one(runs[0], tmp_path / "a")["metrics"]
    second = run_one(runs[0], tmp_path / "b")["metrics"]
    assert first == second
