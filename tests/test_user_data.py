"""Your own data through the command line: graph/custom in CSV and NPY, and NeRF's official Blender
and LLFF layouts, each in the real format written here, and malformed variants of each: refused with
exit 2, one line naming the file (and line), nothing written."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dfabench.cli import main
from dfabench.harness.store import iter_records

N = 30


def exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def refused(capsys, argv, *expected, results: Path):
    code = exit_code(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert all(e in err[0] for e in expected), err[0]
    assert not results.exists()
    return err[0]


# -- graph/custom ------------------------------------------------------------------------------------
def write_graph(folder: Path, fmt: str = "csv", header: bool = True, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    x = rng.random((N, 4)).round(4)
    y = np.arange(N) % 3
    edges = [(i, (i + 1) % N) for i in range(N)] + [(i, (i + 3) % N) for i in range(0, N, 2)]
    if fmt == "npy":
        np.save(folder / "features.npy", x.astype(np.float32))
        np.save(folder / "labels.npy", y)
    else:
        (folder / "features.csv").write_text(("f0,f1,f2,f3\n" if header else "")
                                             + "".join(",".join(map(str, row)) + "\n" for row in x))
        (folder / "labels.csv").write_text(("node,label\n" if header else "")
                                           + "".join(f"{i},{c}\n" for i, c in enumerate(y)))
    (folder / "edges.csv").write_text(("src,dst\n" if header else "") + "".join(f"{a},{b}\n" for a, b in edges))
    return folder


def run_graph(results: Path, folder: Path, *extra: str) -> list[str]:
    return ["run", "graph/custom/gcn", "--method", "bp", "--scale", "smoke", "--results", str(results),
            "--set", f"path={folder}", *extra]


@pytest.mark.parametrize("fmt, header", [("csv", True), ("csv", False), ("npy", True)])
def test_graph_custom_reads_csv_and_npy_with_or_without_a_header(tmp_path, capsys, fmt, header):
    results = tmp_path / "res"
    assert main(run_graph(results, write_graph(tmp_path / "g", fmt, header))) == 0
    (record,) = iter_records(results)
    assert record["status"] == "ok" and record["data"]
    assert str(tmp_path) not in json.dumps(record)  # the path is not recorded: its content fingerprint is


def test_labels_as_one_column_in_node_order(tmp_path, capsys):
    folder = write_graph(tmp_path / "g")
    (folder / "labels.csv").write_text("label\n" + "".join(f"{i % 3}\n" for i in range(N)))
    assert main(run_graph(tmp_path / "res", folder)) == 0


def test_the_same_graph_elsewhere_is_the_same_run_and_another_graph_is_another_row(tmp_path, capsys):
    results = tmp_path / "res"
    assert main(run_graph(results, write_graph(tmp_path / "a"))) == 0
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    capsys.readouterr()
    assert main(run_graph(results, tmp_path / "copy")) == 0
    assert "1 already recorded" in capsys.readouterr().err
    assert main(run_graph(results, write_graph(tmp_path / "b", seed=2))) == 0
    records = list(iter_records(results))
    assert len(records) == 2 and len({r["data"] for r in records}) == 2
    capsys.readouterr()
    assert main(["table", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "| data" in out and all(r["data"][:8] in out for r in records)
    assert out.count("graph/custom") == 0 and out.count("| custom") == 2  # two rows, never averaged


MALFORMED = {
    "edge id out of range": (lambda f: f.joinpath("edges.csv").write_text("src,dst\n0,1\n1,30\n"),
                             ("edges.csv", "line 3", "node id 30 is out of range (nodes are 0..29)")),
    "negative edge id": (lambda f: f.joinpath("edges.csv").write_text("0,1\n-1,2\n"),
                         ("edges.csv", "line 2", "node id -1")),
    "edge id not a number": (lambda f: f.joinpath("edges.csv").write_text("src,dst\n0,1\n2,three\n"),
                             ("edges.csv", "line 3", "not a number")),
    "fractional edge id": (lambda f: f.joinpath("edges.csv").write_text("0,1\n1,2.5\n"),
                           ("edges.csv", "line 2", "whole numbers")),
    "three edge columns": (lambda f: f.joinpath("edges.csv").write_text("0,1,2\n1,2,3\n"),
                           ("edges.csv", "3 columns, expected 2")),
    "empty edge list": (lambda f: f.joinpath("edges.csv").write_text(""), ("edges.csv", "empty file")),
    "header only": (lambda f: f.joinpath("edges.csv").write_text("src,dst\n"), ("edges.csv", "no rows")),
    "a node labelled twice": (lambda f: f.joinpath("labels.csv").write_text(
        "node,label\n" + "".join(f"{i},{i % 3}\n" for i in range(N)) + "4,1\n"),
        ("labels.csv", f"line {N + 2}", "node 4 has a second label")),
    "a node without a label": (lambda f: f.joinpath("labels.csv").write_text(
        "".join(f"{i},{i % 3}\n" for i in range(N - 1))), ("labels.csv", "node 29 has no label")),
    "fewer labels than nodes": (lambda f: f.joinpath("labels.csv").write_text(
        "".join(f"{i % 3}\n" for i in range(N - 2))), ("labels.csv", "28 labels for 30 nodes")),
    "negative label": (lambda f: f.joinpath("labels.csv").write_text(
        "".join(f"{i},{-1 if i == 3 else i % 3}\n" for i in range(N))), ("labels.csv", "classes 0..C-1")),
    "feature not a number": (lambda f: f.joinpath("features.csv").write_text(
        "".join(("x,1,2,3\n" if i == 5 else "0,1,2,3\n") for i in range(N))), ("features.csv", "line 6")),
    "not UTF-8": (lambda f: f.joinpath("edges.csv").write_bytes(b"src,dst\n0,1\n\xff\xfe,2\n"),
                  ("edges.csv", "not UTF-8")),
    "missing labels": (lambda f: f.joinpath("labels.csv").unlink(), ("lacks labels.csv or .npy",)),
    "labels twice": (lambda f: np.save(f / "labels.npy", np.zeros(N)), ("has both labels.npy and labels.csv",)),
    "npy of text": (lambda f: (f.joinpath("features.csv").unlink(), f.joinpath("features.npy").write_bytes(b"junk")),
                    ("features.npy", "not a NumPy array file")),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_user_graph_is_refused_in_one_line_naming_the_file(tmp_path, capsys, case):
    folder = write_graph(tmp_path / "g")
    damage, expected = MALFORMED[case]
    damage(folder)
    refused(capsys, run_graph(tmp_path / "res", folder), *expected, results=tmp_path / "res")


def test_a_missing_or_foreign_graph_file_is_refused(tmp_path, capsys):
    results = tmp_path / "res"
    refused(capsys, run_graph(results, tmp_path / "nowhere"), "does not exist", results=results)
    junk = tmp_path / "graph.pt"
    junk.write_bytes(b"not a torch file")
    refused(capsys, run_graph(results, junk), "graph.pt", "not a saved torch_geometric Data", results=results)
