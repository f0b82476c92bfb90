"""Resolve a run's hyper-parameters from a task's hparams.yaml, then user overrides; strictly.

``hparams.yaml`` holds a list of rules applied in order; a rule applies when every key of its
``when`` matches (a value or a list of values) and then sets its ``set`` keys::

    provenance: {source: "...", date: 2026-11-22}
    rules:
      - set: {epochs: 20, lr: 5.0e-3}
      - when: {scale: smoke}
        set: {epochs: 1}
      - when: {scale: small, method: dfa, model: [mlp, mlp-tanh]}
        set: {lr: 1.0e-3}
        provenance: "grid over lr, small scale, 3 seeds"

``method_options`` merges key by key instead of being replaced. Rules in ``tuned.yaml`` beside it
(written by ``dfabench tune``) apply after these.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .task import Task, TrainHParams

WHEN_KEYS = {"scale", "method", "dataset", "model"}
TUNED_FILE = "tuned.yaml"  # written by `dfabench tune`, applied after hparams.yaml


class ConfigError(ValueError):
    """Bad user input: reported as one line, exit code 2, nothing written."""


def load_rules(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    doc = yaml.safe_load(path.read_text()) or {}
    rules = doc.get("rules", [])
    for i, rule in enumerate(rules):
        unknown = set(rule) - {"when", "set", "provenance"}
        bad_when = set(rule.get("when", {})) - WHEN_KEYS
        if unknown or bad_when:
            raise ConfigError(f"{path}: rule {i} has unknown keys {sorted(unknown | bad_when)}")
    return rules


def _matches(when: dict[str, Any], context: dict[str, str]) -> bool:
    for key, wanted in when.items():
        values = wanted if isinstance(wanted, list) else [wanted]
        if context[key] not in values:
            return False
    return True


def resolve(task: Task, *, scale: str, method: str, dataset: str, model: str,
            overrides: dict[str, Any] | None = None) -> TrainHParams:
    context = {"scale": scale, "method": method, "dataset": dataset, "model": model}
    values: dict[str, Any] = {}
    path = task.hparams_path()
    for rule in load_rules(path) + load_rules(path.with_name(TUNED_FILE)):
        if _matches(rule.get("when", {}), context):
            _merge(values, rule.get("set", {}))
    _merge(values, overrides or {})
    try:
        return task.HParams(**values)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "hparams"
        raise ConfigError(f"{task.domain}/{dataset}/{model}: hyper-parameter {where}: {first['msg']}") from None


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if key == "method_options" and isinstance(value, dict):
            into.setdefault(key, {}).update(value)
        else:
            into[key] = value
