"""The suite's progress bar: finished runs as progress, failed runs counted apart.

A run that ends in ``error`` usually fails in milliseconds (missing data, a bad option); counting
it as progress would make the bar race and its rate promise an ETA the real runs never keep. So a
failed run leaves the bar's position where it was and shrinks its total instead: the ETA is the
remaining runs at the rate of the runs that trained. Diverged and timed-out runs trained, and count.
"""
from __future__ import annotations

import sys

from tqdm.auto import tqdm


class SuiteBar:
    def __init__(self, total: int, done: int, desc: str = "suite"):
        self.failed = 0
        self.label = ""
        self.bar = tqdm(total=total, initial=done, desc=desc, unit="run", file=sys.stderr, dynamic_ncols=True)

    def __enter__(self) -> SuiteBar:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def start(self, label: str) -> None:
        self.label = label
        self._postfix()

    def finished(self, record: dict) -> None:
        if record["status"] == "error":
            self.failed += 1
            self.bar.total -= 1  # not progress: the ETA counts only runs that train
            self._postfix()
            self.bar.refresh()
        else:
            self.bar.update(1)

    def _postfix(self) -> None:
        failed = f"{self.failed} failed | " if self.failed else ""
        self.bar.set_postfix_str(failed + self.label)
