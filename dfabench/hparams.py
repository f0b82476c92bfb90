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

``presets`` names whole hyper-parameter sets (the paper's optimiser settings, say). A rule or the
user (``--set preset=NAME``) picks one with the key ``preset``; its values apply after the rules and
before the user's other overrides. The name itself is not a hyper-parameter: the run is defined by
the values it expands to, so a preset and the same values spelled out are the same run::

    presets:
      adam-1e-4-plateau: {lr: 1.0e-4, schedule: plateau, gamma: 0.2}
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import ConfigError, DataError  # noqa: F401  (re-exported: ConfigError has always lived here)
from .task import Task, TrainHParams

WHEN_KEYS = {"scale", "method", "dataset", "model"}
TUNED_FILE = "tuned.yaml"  # written by `dfabench tune`, applied after hparams.yaml
PRESET_KEY = "preset"


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


def load_presets(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    presets = (yaml.safe_load(path.read_text()) or {}).get("presets", {}) or {}
    for name, values in presets.items():
        if not isinstance(values, dict) or PRESET_KEY in values:
            raise ConfigError(f"{path}: preset {name!r} must be a mapping of hyper-parameters (and not nest presets)")
    return presets


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
    overrides = dict(overrides or {})
    chosen_by_rules = values.pop(PRESET_KEY, None)
    preset = overrides.pop(PRESET_KEY, chosen_by_rules)  # the user's choice wins
    if preset is not None:
        presets = load_presets(path)
        if preset not in presets:
            known = ", ".join(sorted(presets)) or "none"
            raise ConfigError(f"{task.domain}: unknown preset {preset!r} (known: {known})")
        _merge(values, presets[preset])
    _merge(values, overrides)
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
