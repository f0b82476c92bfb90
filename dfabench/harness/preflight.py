"""The pre-flight data check: before anything trains, every task checks the data the plan will read.

``check_data(runs)`` calls ``Task.check_data`` once per (domain, dataset, data options) of the planned
runs. A fault of the input (the task's ``DataError``/``ConfigError``, a missing or unreadable file,
bad text encoding, or one of the task's own ``data_errors``) becomes one ``DataError`` line, so the
command exits 2 with nothing written. Any other exception is a fault of the code: it is left for the
runs to meet, and they record it as ``error``.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..errors import ConfigError, DataError
from .identity import data_fingerprint

if TYPE_CHECKING:
    from .plan import PlannedRun


def options_key(task, hparams: dict) -> str:
    """The data options of one run, as the key the check is done once per."""
    names = task.data_options
    if names is None:
        from ..task import TrainHParams

        names = set(task.HParams.model_fields) - set(TrainHParams.model_fields)
    names = set(names) | task.data_location_fields
    return json.dumps({k: hparams.get(k) for k in sorted(names) if k in hparams}, sort_keys=True, default=str)


def _one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def check_data(runs: list["PlannedRun"]) -> None:
    done: set[tuple[str, str, str]] = set()
    for run in runs:
        task = run.task
        key = (run.domain, run.dataset, options_key(task, run.hparams.model_dump(mode="json")))
        if key in done:
            continue
        done.add(key)
        try:
            task.check_data(run.dataset, run.hparams, run.scale)
        except (ConfigError, OSError, UnicodeError, *task.data_errors) as err:
            message = _one_line(err)
            if isinstance(err, OSError) and not isinstance(err, ConfigError) and err.filename:
                message = f"cannot read {err.filename}: {err.strerror or message}"
            prefix = f"{run.domain}/" if message.startswith(f"{run.dataset}:") else f"{run.domain}/{run.dataset}: "
            raise DataError(prefix + message) from None
        except Exception:  # noqa: BLE001 - a bug, not bad data: the run records it as an error
            continue
    # Fingerprint the user's data again now that it has been read once: a loader may have fetched it
    # into its folder (Planetoid with download=true), and the id must not change on the next call.
    for run in runs:
        if run.data is not None:
            run.data = data_fingerprint(run.task, run.hparams.model_dump(mode="json"))
