"""What makes two runs the same run, and what a record may say about the machine it ran on.

* A run id hashes the task, dataset, model, method, scale, every hyper-parameter after overrides and
  the seed. A hyper-parameter that says *where* a user's data is (``Task.data_location_fields``) enters
  the hash as the content fingerprint of what it points at, never as the path: the same files
  elsewhere are the same run, other files under the same path are not. Cache locations
  (``Task.cache_location_fields``) do not enter it at all. With no location set the key is exactly
  what it always was, so the ids of existing records do not change.
* Built-in data a task generates itself may have a generator whose settings are not
  hyper-parameters (``Task.generator_version``: a short hash of those settings, None by default). It
  enters the hash only where a task gives one, so that changed settings make new runs while every
  other dataset keeps the id it always had.
* A compute budget (``--budget``) enters the hash as its kind and value, only when a run has one.
* ``overrides`` is what the user's ``--set`` changed, value by value, against the task's own rules:
  tables keep such runs in their own row (the id already tells them apart).
* ``scrub`` takes absolute paths out of the strings of a record (error messages, tracebacks, the
  command line), keeping each path's last part.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from ..cache import cache_dir

# Files and folders inside a user's data folder that loaders write themselves (torch_geometric's
# processed/, our own caches): hashing them would change the id after the first run.
_GENERATED = re.compile(r"^(\..*|processed|__pycache__|.*\.dfabench-.*)$")


def run_id(domain: str, dataset: str, model: str, method: str, scale: str, hparams: dict[str, Any], seed: int,
           generator: str | None = None, budget: dict[str, Any] | None = None) -> str:
    """Content hash of what defines a run: the same inputs always give the same id."""
    fields = {"domain": domain, "dataset": dataset, "model": model, "method": method, "scale": scale,
              "hparams": hparams, "seed": seed}
    if generator is not None:  # only then: the ids of data without a generator version stay as they were
        fields["generator"] = generator
    if budget is not None:  # likewise: an unbudgeted run keeps the id it always had
        fields["budget"] = budget
    key = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def budget_key(budget: dict[str, Any] | None) -> dict[str, Any] | None:
    """What of a budget enters the run id: its kind and value (how it was found, e.g. from BP's record,
    does not: ``--budget flops=X`` with BP's X is the same run as ``--budget bp``)."""
    return None if budget is None else {"kind": budget["kind"], "value": budget["value"]}


def locations(task, hparams: dict[str, Any]) -> dict[str, str]:
    """The data location hyper-parameters this run sets, as given."""
    return {k: str(hparams[k]) for k in sorted(task.data_location_fields) if hparams.get(k) not in (None, "")}


def data_fingerprint(task, hparams: dict[str, Any]) -> str | None:
    """Content fingerprint of the user's data this run reads (None: the task's built-in data, whose
    content follows from the dataset name and the hyper-parameters)."""
    where = locations(task, hparams)
    if not where:
        return None
    digest = hashlib.sha256()
    for key, value in where.items():
        digest.update(f"{key}={content_hash(str(Path(value).expanduser().resolve()))};".encode())
    return digest.hexdigest()[:16]


def settings_version(settings: dict[str, Any]) -> str:
    """A short hash of a generator's settings (``Task.generator_version``'s usual value)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def id_hparams(task, hparams: dict[str, Any], fingerprint: str | None) -> dict[str, Any]:
    """The hyper-parameters as they enter the run id: locations replaced by the content they name."""
    out = dict(hparams)
    for key in task.data_location_fields & set(out):
        if out[key] not in (None, ""):
            out[key] = f"content:{fingerprint}"
    for key in task.cache_location_fields & set(out):
        out[key] = None
    return out


def recorded_hparams(task, hparams: dict[str, Any], fingerprint: str | None) -> dict[str, Any]:
    """The hyper-parameters as a record stores them: no path of this machine."""
    out = id_hparams(task, hparams, fingerprint)
    for key in task.cache_location_fields & set(hparams):
        out[key] = None if hparams[key] in (None, "") else "<local cache>"
    return out


def overrides(base: dict[str, Any], final: dict[str, Any], skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Keys whose value the user's overrides changed (method_options key by key)."""
    changed: dict[str, Any] = {}
    for key, value in final.items():
        if key in skip:
            continue
        if key == "method_options" and isinstance(value, dict):
            old = base.get(key) or {}
            changed.update({f"{key}.{k}": v for k, v in sorted(value.items()) if old.get(k, object()) != v})
        elif base.get(key) != value:
            changed[key] = value
    return changed


def overrides_label(values: dict[str, Any] | None) -> str:
    """'epochs=2 lr=1e+06': the short text a table shows for a record's overrides ('' for none)."""
    return " ".join(f"{k}={json.dumps(v) if not isinstance(v, (int, float, str)) else v}"
                    for k, v in sorted((values or {}).items()))


def content_hash(path: str) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, sorted; files loaders
    generate skipped). Cached on (path, size, mtime) so a large file is read once per process."""
    p = Path(path)
    if p.is_file():
        stat = p.stat()
        return _file_hash(str(p), stat.st_size, stat.st_mtime_ns)
    if not p.is_dir():
        return "missing"
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(p):
        dirs[:] = sorted(d for d in dirs if not _GENERATED.match(d))
        for name in sorted(f for f in files if not _GENERATED.match(f)):
            f = Path(root, name)
            stat = f.stat()
            digest.update(f"{f.relative_to(p).as_posix()}\0{_file_hash(str(f), stat.st_size, stat.st_mtime_ns)}\0".encode())
    return digest.hexdigest()


LARGE = 64 << 20  # files this big keep their digest across processes (Criteo's train.txt is 11 GB)


@functools.lru_cache(maxsize=4096)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    key = f"{path}|{size}|{mtime_ns}"
    known = _digest_cache() if size >= LARGE else {}
    if key in known:
        return known[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if size >= LARGE:
        _remember(key, digest.hexdigest())
    return digest.hexdigest()


def _digest_cache_path() -> Path:
    return cache_dir("fingerprints.json")


def _digest_cache() -> dict[str, str]:
    try:
        return json.loads(_digest_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _remember(key: str, digest: str) -> None:
    """Best effort: a cache that cannot be written only costs the next process a re-read."""
    path = _digest_cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({**_digest_cache(), key: digest}))
        os.replace(tmp, path)
    except OSError:
        pass


# An absolute POSIX path, or a home-relative one: '/', then at least one more part; not inside a word
# ('tokens/s') and not a URL's '//'.
_ABSOLUTE = re.compile(r"(?<![\w./~])(?:~/|/)(?:[\w.@+-]+/)*[\w.@+-]+/?")


def scrub(value: Any) -> Any:
    """A record with every absolute path in its strings cut to '…/<last part>'."""
    if isinstance(value, str):
        return _ABSOLUTE.sub(lambda m: "…/" + m.group(0).rstrip("/").rsplit("/", 1)[-1] if "/" in m.group(0)[1:]
                             or m.group(0).startswith("~") else m.group(0), value)
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value
