"""Image loaders: the official IDX format (files the test writes) and the offline fallbacks."""
import gzip
import json

import numpy as np
import pytest

from dfabench.cli import main
from dfabench.data.images import DatasetUnavailable, load_images, read_idx, write_idx
from dfabench.errors import DataError
from dfabench.harness.store import iter_records


def write_mnist_dir(directory, n_train=1000, n_test=100, gz=True):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    y_train = rng.integers(0, 10, n_train).astype(np.uint8)
    y_test = rng.integers(0, 10, n_test).astype(np.uint8)
    # noisy copies of one random prototype per class, so a model has something to learn
    prototypes = rng.random((10, 28, 28)) * 200
    x_train = (prototypes[y_train] + rng.random((n_train, 28, 28)) * 55).astype(np.uint8)
    x_test = (prototypes[y_test] + rng.random((n_test, 28, 28)) * 55).astype(np.uint8)
    write_idx(directory / f"train-images-idx3-ubyte{suffix}", x_train)
    write_idx(directory / f"train-labels-idx1-ubyte{suffix}", y_train)
    write_idx(directory / f"t10k-images-idx3-ubyte{suffix}", x_test)
    write_idx(directory / f"t10k-labels-idx1-ubyte{suffix}", y_test)
    return x_train, y_train


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    x, y = write_mnist_dir(tmp_path, gz=gz)
    images = load_images("mnist", tmp_path)
    np.testing.assert_array_equal(images.train_x, x)
    np.testing.assert_array_equal(images.train_y, y)
    assert images.test_x.shape == (100, 28, 28) and images.num_classes == 10


def test_idx_header_is_checked(tmp_path):
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc")  # float code, not ubyte
    with pytest.raises(ValueError, match="unsigned-byte"):
        read_idx(path)


def test_missing_idx_files_are_named(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DatasetUnavailable, match="t10k-images"):
        load_images("mnist", tmp_path)


def test_mlp_task_trains_on_official_idx_files(tmp_path):
    data = tmp_path / "idx"
    data.mkdir()
    write_mnist_dir(data)
    results = tmp_path / "res"
    assert main(["run", "mlp/mnist/mlp", "--method", "dfa", "--scale", "smoke", "--results", str(results),
                 "--set", f"data_dir={data}", "--set", "epochs=5", "--set", "batch_size=32"]) == 0
    (record,) = iter_records(results)
    assert record["status"] == "ok"
    assert record["provenance"]["data_fingerprint"].startswith("idx:")
    assert str(tmp_path) not in (results / "runs" / f"{record['id']}.json").read_text()  # no path of this machine
    assert record["metrics"]["test"]["accuracy"] > 0.5  # chance is 0.1
    json.dumps(record)


def test_fallback_datasets_always_load():
    digits = load_images("digits")
    assert digits.train_x.dtype == np.uint8 and digits.train_x.shape[1:] == (8, 8)
    assert digits.num_classes == 10


def test_the_data_fingerprint_hashes_the_bytes_and_keeps_the_committed_records_value():
    """The fingerprint hashes each tensor's buffer in place (no copy); its value must stay the
    sha256 of the bytes, which is what the committed records carry."""
    import hashlib
    from pathlib import Path

    import torch

    from dfabench.harness.plan import plan
    from dfabench.task import tensor_fingerprint

    for t in (torch.rand(5, 7), torch.rand(3, 4).t(), torch.randint(0, 9, (11,)), torch.rand(4) > 0.5,
              torch.tensor(2.5), torch.zeros(0, 3)):
        assert tensor_fingerprint(t) == hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]
    (run,), _ = plan(["mlp/digits/mlp"], ["bp"], "small", [0])
    data = run.task.load_data(run.dataset, run.hparams, 0, run.scale, torch.device("cpu"))
    committed = {r["provenance"]["data_fingerprint"]
                 for r in iter_records(Path(__file__).resolve().parents[1] / "results" / "small")
                 if r["domain"] == "mlp" and r["dataset"] == "digits" and r["status"] == "ok"}
    assert run.task.fingerprint(data) in committed and len(committed) == 1


def test_a_gzipped_idx_file_is_decompressed_once_and_a_changed_file_is_read_again(tmp_path, monkeypatch):
    monkeypatch.setenv("DFABENCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(path, np.arange(7, dtype=np.uint8))
    np.testing.assert_array_equal(read_idx(path), np.arange(7))
    (kept,) = (tmp_path / "cache" / "idx").glob("*.npy")  # written whole, named by the content
    assert not list((tmp_path / "cache" / "idx").glob(".*"))
    np.testing.assert_array_equal(read_idx(path), np.arange(7))  # now from the cache
    write_idx(path, np.arange(5, dtype=np.uint8))  # another file under the same name
    np.testing.assert_array_equal(read_idx(path), np.arange(5))
    kept.write_bytes(kept.read_bytes()[:20])  # a cache entry cut short is decompressed again
    write_idx(path, np.arange(7, dtype=np.uint8))
    np.testing.assert_array_equal(read_idx(path), np.arange(7))
    bad = tmp_path / "bad-idx1-ubyte.gz"  # and a broken file is still refused, not cached
    with gzip.open(bad, "wb") as f:
        f.write(b"\0\0\x09\x01" + b"\0" * 8)
    with pytest.raises(DataError, match="not an unsigned-byte IDX file"):
        read_idx(bad)


def test_an_idx_cache_that_cannot_be_written_costs_only_a_decompression(tmp_path, monkeypatch):
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder would go")
    monkeypatch.setenv("DFABENCH_CACHE", str(blocked))
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    write_idx(path, np.arange(4, dtype=np.uint8))
    np.testing.assert_array_equal(read_idx(path), np.arange(4))
    assert blocked.read_text().startswith("a file")


@pytest.mark.parametrize("damage", ["cut short", "not gzip"])
def test_a_broken_gzipped_idx_file_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys, damage):
    monkeypatch.setenv("DFABENCH_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "idx"
    data.mkdir()
    write_mnist_dir(data)
    labels = data / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:30] if damage == "cut short" else b"not gzip at all")
    results = tmp_path / "res"
    assert main(["run", "mlp/mnist/mlp", "--method", "bp", "--scale", "smoke", "--results", str(results),
                 "--set", f"data_dir={data}"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "t10k-labels-idx1-ubyte.gz: not a whole gzip file" in line
    assert not results.exists() or not any(results.rglob("*.json"))
