"""Data readiness: what `dfabench data` and `list` say, what `data install` runs, and the checksummed
official download (tested offline: the test writes the files and serves them from a file:// URL)."""
from __future__ import annotations

import gzip
import hashlib
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from dfabench.cli import main
from dfabench.data import download as dl
from dfabench.data import images, sources
from dfabench.data.images import IDX_FILES, load_images, write_idx


@pytest.fixture
def bare_machine(tmp_path, monkeypatch):
    """No Debian data packages and no data wheels here, apt-get available as root."""
    monkeypatch.setattr(images, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")
    monkeypatch.setenv(images.DATA_HOME_ENV, str(tmp_path / "data-home"))
    monkeypatch.setattr(sources, "KJV_DATA", tmp_path / "no-bible.data")
    real = sources._package_dir
    monkeypatch.setattr(sources, "_package_dir", lambda m: None if m in ("recbole", "gensim") else real(m))
    monkeypatch.setattr(sources, "_apt_prefix", lambda: ["apt-get"])
    return tmp_path


def test_status_names_the_exact_command_for_each_missing_source(bare_machine, monkeypatch):
    commands = {name: sources.status(s) for name, s in sources.SOURCES.items()}
    assert commands["fashion-mnist"].state == sources.INSTALLABLE
    assert commands["fashion-mnist"].command == "apt-get install dataset-fashion-mnist"
    assert commands["movielens"].command == "pip install --no-deps recbole==1.2.1"
    assert commands["wiki-gensim"].command == "pip install --no-deps gensim==4.4.0"
    assert commands["kjv"].command == "apt-get install bible-kjv bible-kjv-text"
    monkeypatch.setattr(sources, "_apt_prefix", lambda: None)  # not Debian: the official download
    fashion = sources.status(sources.SOURCES["fashion-mnist"])
    assert (fashion.state, fashion.command) == (sources.DOWNLOADABLE, "dfabench data download fashion-mnist")


def test_list_marks_each_cells_data(bare_machine, capsys):
    assert main(["list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")}
    assert lines["mlp/fashion-mnist/mlp"].endswith("data=installable (apt-get install dataset-fashion-mnist)")
    assert lines["graph/fmnist-knn/gcn"].endswith("data=installable (apt-get install dataset-fashion-mnist)")
    assert lines["ctr/movielens/deepfm"].endswith("data=installable (pip install --no-deps recbole==1.2.1)")
    assert lines["mlp/digits/mlp"].endswith("data=ready")
    assert "data=needs your files" in lines["graph/cora/gcn"]


def test_install_runs_apt_and_pip_and_retries_apt_after_an_update(bare_machine, monkeypatch):
    ran = []
    installed = set()

    def run(command):
        ran.append(command)
        if command[:2] == ["apt-get", "install"] and ["apt-get", "update"] not in ran:
            return SimpleNamespace(returncode=100)  # a fresh image: no package lists yet
        installed.add(command[-1])
        return SimpleNamespace(returncode=0)

    real = sources._package_dir
    monkeypatch.setattr(sources, "_package_dir",
                        lambda m: bare_machine if m == "recbole" and "recbole==1.2.1" in installed else
                        None if m in ("recbole", "gensim") else real(m))
    (bare_machine / "dataset_example" / "ml-100k").mkdir(parents=True)
    missing = sources.install(["fashion-mnist", "movielens"], log=lambda line: None, run=run)
    assert ran == [["apt-get", "install", "-y", "dataset-fashion-mnist"], ["apt-get", "update"],
                   ["apt-get", "install", "-y", "dataset-fashion-mnist"],
                   [sys.executable, "-m", "pip", "install", "--no-deps", "recbole==1.2.1"]]
    # the fake apt-get installs nothing, so fashion-mnist is still missing and says so; movielens is ready
    assert missing == ["fashion-mnist: installable: apt-get install dataset-fashion-mnist"]


def test_data_install_exits_1_when_something_stays_missing_and_2_for_an_unknown_name(bare_machine, monkeypatch):
    monkeypatch.setattr(sources.subprocess, "run", lambda command: SimpleNamespace(returncode=1))
    assert main(["data", "install", "kjv"]) == 1
    assert main(["data", "install", "no-such-source"]) == 2


def _official_files(directory: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Small IDX .gz files in the official layout, and their MD5s as a publisher would list them."""
    rng = np.random.default_rng(0)
    arrays = {"train_x": rng.integers(0, 256, (12, 28, 28)), "train_y": rng.integers(0, 10, 12),
              "test_x": rng.integers(0, 256, (5, 28, 28)), "test_y": rng.integers(0, 10, 5)}
    md5 = {}
    for key, stem in IDX_FILES.items():
        path = directory / f"{stem}.gz"
        write_idx(path, arrays[key])
        md5[path.name] = hashlib.md5(path.read_bytes()).hexdigest()
    return md5, arrays


def test_download_verifies_checksums_and_the_loader_then_finds_the_files(bare_machine):
    mirror = bare_machine / "mirror"
    mirror.mkdir()
    md5, arrays = _official_files(mirror)
    files = dl.OfficialFiles("fashion-mnist", (mirror.as_uri() + "/",), md5, size_mb=0.01)
    assert sources.status(sources.SOURCES["fashion-mnist"]).state != sources.READY
    dest = dl.download(files, log=lambda line: None)
    assert dest == bare_machine / "data-home" / "fashion-mnist"
    assert sources.status(sources.SOURCES["fashion-mnist"]).state == sources.READY
    loaded = load_images("fashion-mnist")
    assert loaded.source == "official:fashion-mnist"
    np.testing.assert_array_equal(loaded.train_x, arrays["train_x"])
    np.testing.assert_array_equal(loaded.test_y, arrays["test_y"])


def test_a_corrupted_download_is_rejected_and_nothing_is_kept(bare_machine):
    mirror = bare_machine / "mirror"
    mirror.mkdir()
    md5, _ = _official_files(mirror)
    bad = mirror / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07"))  # valid IDX, other content
    files = dl.OfficialFiles("fashion-mnist", (mirror.as_uri() + "/",), md5, size_mb=0.01)
    with pytest.raises(dl.ChecksumError, match="t10k-labels-idx1-ubyte.gz has MD5"):
        dl.download(files, log=lambda line: None)
    dest = bare_machine / "data-home" / "fashion-mnist"
    assert not (dest / bad.name).exists() and not list(dest.glob(".*.part"))
    with pytest.raises(images.DatasetUnavailable, match="dfabench data download fashion-mnist"):
        load_images("fashion-mnist")


def test_data_download_command_fetches_then_reports_ready_and_exits_1_on_a_bad_checksum(bare_machine, monkeypatch,
                                                                                         capsys):
    mirror = bare_machine / "mirror"
    mirror.mkdir()
    md5, _ = _official_files(mirror)
    monkeypatch.setitem(dl.DOWNLOADS, "fashion-mnist", dl.OfficialFiles("fashion-mnist", (mirror.as_uri() + "/",),
                                                                        md5, size_mb=0.01))
    assert main(["data", "download", "fashion-mnist"]) == 0
    assert main(["data"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[:2] == ["fashion-mnist", "ready"]
    (bare_machine / "data-home" / "fashion-mnist" / "train-labels-idx1-ubyte.gz").unlink()
    (mirror / "train-labels-idx1-ubyte.gz").write_bytes(b"not what was published")
    assert main(["data", "download", "fashion-mnist"]) == 1
    assert "has MD5" in capsys.readouterr().err
    assert main(["data", "download", "cifar10"]) == 2  # no official download offered for it
