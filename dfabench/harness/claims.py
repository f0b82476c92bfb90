"""Per-run claims, so that two invocations on one results folder never run the same run twice.

Before a run starts its executor claims it: an exclusive ``flock`` on ``<results>/runs/.claim-<id>``,
held for the run's whole duration; the file names the holder (pid, host) for messages. The lock is
the kernel's: it goes when its process exits, however it exits (a SIGKILL included), so a claim whose
process is gone is stale by construction and the next claimant takes it over. A released claim's file
is removed; a claimant checks it locked the file that is still at that name (the classic
unlink-while-locking race), else it tries again.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no claims, as before
    fcntl = None


class Claim:
    """A held claim; ``release()`` (or leaving the ``with``) gives it back."""

    def __init__(self, path: Path, fd: int):
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: nobody else can hold this inode
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim_path(results: Path, run_id: str) -> Path:
    return Path(results) / "runs" / f".claim-{run_id}"


def try_claim(results: Path, run_id: str) -> Claim | None:
    """Claim ``run_id`` for this process; None when another live process holds it."""
    path = claim_path(results, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        return Claim(path, os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
    for _ in range(20):
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the holder released (and removed) it between our open and our lock: again
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        return Claim(path, fd)
    return None


def holder(results: Path, run_id: str) -> str:
    """'pid 123 on host' of a claim's holder, for messages ('' when unknown)."""
    try:
        info = json.loads(claim_path(results, run_id).read_text())
        return f"pid {info['pid']} on {info['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return ""
