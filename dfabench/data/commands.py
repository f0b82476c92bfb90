"""`dfabench data`: what offline data is here, installing it, and the explicit official downloads."""
from __future__ import annotations

import sys

from ..catalog import specs
from ..errors import ConfigError
from .sources import NEEDS_FILES, SOURCES, USER_FILES, install, status


def users() -> dict[str, list[str]]:
    """source name -> the datasets (domain/dataset) that read it."""
    used: dict[str, list[str]] = {}
    for domain, spec in sorted(specs().items()):
        for dataset in spec.datasets:
            for name in spec.data_sources(dataset):
                used.setdefault(name, []).append(f"{domain}/{dataset}")
    return used


def show(out=None) -> int:
    out = out or sys.stdout
    used = users()
    for name, source in SOURCES.items():
        st = status(source)
        how = str(st.where) if st.where else st.command
        print(f"{name:14s} {st.state:12s} {how}", file=out)
        print(f"{'':14s} {source.what}; used by {', '.join(used.get(name, [])) or 'the tests'}", file=out)
    print(f"{'official sets':14s} {NEEDS_FILES}: {', '.join(used.get(USER_FILES, []))} (run only when named; "
          f"each task's README says which --set option points at them)", file=out)
    return 0


def _check_names(names: list[str]) -> None:
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise ConfigError(f"unknown dataset source {unknown[0]!r}; known: {', '.join(SOURCES)}")


def install_command(names: list[str]) -> int:
    """Install the named sources (all when none is named); exit 1 when any stays missing."""
    _check_names(names)
    missing = install(names, log=lambda line: print(line, file=sys.stderr))
    for line in missing:
        print(f"not ready: {line}", file=sys.stderr)
    return 1 if missing else 0


def download_command(name: str) -> int:
    """Fetch and check the official files into the data home ($DFABENCH_DATA), where loaders look."""
    from .download import DOWNLOADS, DownloadError, download

    if name not in DOWNLOADS:
        raise ConfigError(f"no official download for {name!r}; known: {', '.join(DOWNLOADS)}")
    try:
        download(DOWNLOADS[name], log=lambda line: print(line, file=sys.stderr))
    except DownloadError as err:
        print(f"dfabench: download failed: {err}", file=sys.stderr)
        return 1
    return 0
