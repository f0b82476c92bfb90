"""Explicit, checksummed downloads of official datasets (only `dfabench data download NAME` calls this;
nothing downloads at run time).

Each file is fetched to a ``.part`` file beside its target, its MD5 compared with the checksum the
dataset's authors publish, and only then renamed into place, so an interrupted or corrupted
download leaves nothing a loader would read. The files are then parsed once, as the loader will.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .images import data_home, load_idx_dir


class DownloadError(RuntimeError):
    pass


class ChecksumError(DownloadError):
    pass


@dataclass(frozen=True)
class OfficialFiles:
    name: str
    urls: tuple[str, ...]  # base URLs (mirrors), tried in order
    md5: dict[str, str]  # file name -> the MD5 its authors publish
    size_mb: float


# zalandoresearch/fashion-mnist README (the same MD5s torchvision checks). Debian's package holds the
# same images re-compressed, so its .gz files do not match these.
FASHION_MNIST = OfficialFiles(
    name="fashion-mnist",
    urls=("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
          "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
    md5={"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
         "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
         "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
         "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
    size_mb=30.0,
)
DOWNLOADS = {FASHION_MNIST.name: FASHION_MNIST}


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(urls: tuple[str, ...], name: str, part: Path, timeout_s: float) -> None:
    errors = []
    for base in urls:
        try:
            with urllib.request.urlopen(base + name, timeout=timeout_s) as response, open(part, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
            return
        except OSError as err:  # URLError and HTTPError are OSErrors; try the next mirror
            part.unlink(missing_ok=True)
            errors.append(f"{base}{name}: {err}")
    raise DownloadError(f"could not fetch {name}: " + "; ".join(errors))


def download(files: OfficialFiles, dest: Path | None = None, timeout_s: float = 60.0, log=print) -> Path:
    """Fetch and verify every file of ``files`` into ``dest`` (default: the data home); returns dest.
    A file already there with the right checksum is kept."""
    dest = Path(dest) if dest is not None else data_home() / files.name
    dest.mkdir(parents=True, exist_ok=True)
    for name, expected in files.md5.items():
        target = dest / name
        if target.exists() and md5_of(target) == expected:
            log(f"{files.name}: {name} already there, checksum ok")
            continue
        part = dest / f".{name}.part"
        log(f"{files.name}: fetching {name}")
        _fetch(files.urls, name, part, timeout_s)
        got = md5_of(part)
        if got != expected:
            part.unlink()
            raise ChecksumError(f"{files.name}: {name} has MD5 {got}, the published one is {expected}; "
                                f"nothing was kept")
        os.replace(part, target)
    load_idx_dir(dest, f"official:{files.name}")  # parse once, as the loader will
    log(f"{files.name}: {len(files.md5)} files verified in {dest}")
    return dest
