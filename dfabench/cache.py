"""Where dfabench keeps what it derives from data (tokenizers, encoded logs, file digests).

``$DFABENCH_CACHE``, else ``$XDG_CACHE_HOME/dfabench``, else ``~/.cache/dfabench``: never beside the
user's data, which may be read-only. Kept free of heavy imports.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = os.environ.get("DFABENCH_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dfabench"
    return Path(root, *parts)
