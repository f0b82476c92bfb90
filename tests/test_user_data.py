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
    assert main(["table", "--results", str(results), "--format", "md"]) == 0
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


# -- NeRF: official Blender and LLFF layouts ----------------------------------------------------------
NERF_TINY = ["--set", "resolution=8", "--set", "max_eval_views=1", "--set", "batch_size=16",
             "--set", "eval_chunk=64"]


def write_blender_scene(folder: Path) -> Path:
    """A small scene in the official Blender layout (transforms_*.json + RGBA PNGs), as the procedural
    scenes are written: 4 train, 2 val, 2 test views of 8x8."""
    from dfabench.tasks.nerf.data import write_procedural

    root = write_procedural(folder, "blobs", 8, seed=0, n_train=4, n_val=2, n_test=2)
    scene = folder / "lego"
    root.rename(scene)
    return scene


def write_llff_scene(folder: Path, n: int = 9, h: int = 6, w: int = 8) -> Path:
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    rows = []
    for k in range(n):
        Image.fromarray(np.full((h, w, 3), 20 * k, np.uint8)).save(folder / "images" / f"img_{k:02d}.png")
        pose = np.concatenate([np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1.0]]), [[0.01 * k], [0], [0]],
                               [[h], [w], [5.0]]], 1)
        rows.append(np.concatenate([pose.reshape(-1), [1.0, 10.0]]))
    np.save(folder / "poses_bounds.npy", np.array(rows))
    return folder


def nerf_run(results: Path, selector: str, scene: Path) -> list[str]:
    return ["run", selector, "--method", "bp,dfa", "--scale", "smoke", "--results", str(results),
            "--set", f"data_dir={scene}", *NERF_TINY]


def test_official_scenes_are_listed_as_needing_data(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    lego = next(line for line in lines if line.startswith("nerf/blender-lego/nerf "))
    fern = next(line for line in lines if line.startswith("nerf/llff-fern/nerf "))
    assert "data=needs your files" in lego and "data=needs your files" in fern
    assert next(line for line in lines if line.startswith("nerf/blobs/nerf ")).endswith("data=ready")


def test_nerf_blender_scene_trains_from_the_command_line(tmp_path, capsys):
    results = tmp_path / "res"
    assert main(nerf_run(results, "nerf/blender/lego", write_blender_scene(tmp_path))) == 0
    records = list(iter_records(results))
    assert sorted(r["method"] for r in records) == ["bp", "dfa"]
    assert all(r["status"] == "ok" and r["dataset"] == "blender-lego" for r in records)
    assert all(r["metrics"]["test"]["psnr"] > 0 for r in records)
    assert str(tmp_path) not in (results / "runs" / f"{records[0]['id']}.json").read_text()


def test_nerf_llff_scene_trains_from_the_command_line(tmp_path, capsys):
    results = tmp_path / "res"
    assert main(nerf_run(results, "nerf/llff/fern", write_llff_scene(tmp_path / "fern"))) == 0
    assert all(r["status"] == "ok" and r["dataset"] == "llff-fern" for r in iter_records(results))


def _replace_image(scene: Path, split: str, size: tuple[int, int]):
    from PIL import Image

    Image.new("RGBA", size, (10, 20, 30, 255)).save(scene / split / "r_0.png")


def _frames(scene: Path, split: str, frames):
    meta = json.loads((scene / f"transforms_{split}.json").read_text())
    meta["frames"] = frames(meta["frames"])
    (scene / f"transforms_{split}.json").write_text(json.dumps(meta))


BLENDER_MALFORMED = {
    "image missing": (lambda s: (s / "test" / "r_1.png").unlink(), ("transforms_test.json", "frames[1]",
                                                                      "does not exist")),
    "sizes differ": (lambda s: _replace_image(s, "train", (6, 6)), ("r_0.png", "every view must share one size")),
    "val equals test": (lambda s: shutil.copy(s / "val" / "r_1.png", s / "test" / "r_0.png"),
                        ("identical to validation view", "val and test must be different views")),
    "empty split": (lambda s: _frames(s, "val", lambda f: []), ("transforms_val.json", "no frames")),
    "no transforms": (lambda s: (s / "transforms_test.json").unlink(), ("transforms_test.json", "missing")),
    "not JSON": (lambda s: (s / "transforms_train.json").write_text("{frames: ["), ("transforms_train.json",
                                                                                     "not JSON")),
    "bad matrix": (lambda s: _frames(s, "train", lambda f: [{**f[0], "transform_matrix": [[1, 0]]}] + f[1:]),
                   ("transforms_train.json", "frames[0]", "4x4 transform_matrix")),
    "truncated png": (lambda s: (s / "train" / "r_2.png").write_bytes(b"\x89PNG\r\n"), ("r_2.png",)),
}


@pytest.mark.parametrize("case", sorted(BLENDER_MALFORMED))
def test_a_malformed_blender_scene_is_refused_before_training(tmp_path, capsys, case):
    scene = write_blender_scene(tmp_path)
    damage, expected = BLENDER_MALFORMED[case]
    damage(scene)
    refused(capsys, nerf_run(tmp_path / "res", "nerf/blender/lego", scene), *expected, results=tmp_path / "res")


LLFF_MALFORMED = {
    "an image too few": (lambda s: (s / "images" / "img_03.png").unlink(), ("8 images for the 9 poses",)),
    "sizes differ": (lambda s: __import__("PIL.Image").Image.new("RGB", (4, 4)).save(s / "images" / "img_05.png"),
                     ("img_05.png", "every view must share one size")),
    "too few views": (lambda s: (np.save(s / "poses_bounds.npy", np.load(s / "poses_bounds.npy")[:3]),
                                 [(s / "images" / f"img_{k:02d}.png").unlink() for k in range(3, 9)]),
                      ("3 views", "need at least 5")),
    "wrong columns": (lambda s: np.save(s / "poses_bounds.npy", np.zeros((9, 15))), ("N x 17",)),
    "no poses": (lambda s: (s / "poses_bounds.npy").unlink(), ("poses_bounds.npy", "missing")),
}


@pytest.mark.parametrize("case", sorted(LLFF_MALFORMED))
def test_a_malformed_llff_scene_is_refused_before_training(tmp_path, capsys, case):
    scene = write_llff_scene(tmp_path / "fern")
    damage, expected = LLFF_MALFORMED[case]
    damage(scene)
    refused(capsys, nerf_run(tmp_path / "res", "nerf/llff/fern", scene), *expected, results=tmp_path / "res")


def test_an_official_scene_without_data_dir_says_what_to_pass(tmp_path, capsys):
    results = tmp_path / "res"
    refused(capsys, ["run", "nerf/blender/lego", "--scale", "smoke", "--results", str(results)],
            "blender-lego needs its scene folder: --set data_dir=DIR", results=results)
    refused(capsys, ["run", "nerf/llff/fern", "--scale", "smoke", "--results", str(results),
                     "--set", f"data_dir={tmp_path / 'nope'}"], "is not a folder", results=results)
