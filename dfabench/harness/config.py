"""A run's configuration: what `dfabench run` takes on its command line or in a ``--config`` YAML file.

Every run option has the same name in both; the command line wins over the file. Everything is
strict: an unknown key, a wrong type or an unknown device is a ``ConfigError`` (one line, exit 2).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError

MAX_SEEDS = 1000  # a stated limit: --seeds 100000000000 is a typo, not a plan
RUN_OPTIONS = ("selectors", "method", "scale", "seeds", "results", "device", "set", "budget", "compile", "executor",
               "address", "wandb")


def _model():
    """The pydantic model of a run configuration (built on first use: pydantic costs ~0.1 s to import)."""
    from pydantic import BaseModel, ConfigDict, Field

    class RunConfig(BaseModel):
        model_config = ConfigDict(extra="forbid")

        selectors: list[str] = Field(default_factory=list)
        method: list[str] | str = "bp,dfa,shallow"
        scale: str = "small"
        seeds: int = Field(1, ge=1, le=MAX_SEEDS)
        results: str = "results"
        device: str = "cpu"
        set: dict[str, Any] = Field(default_factory=dict)
        budget: str | None = None  # --budget: flops=X, seconds=X, bp (harness/compute.py)
        compile: bool = False  # capture each step: the same as set: {capture: true}
        executor: Literal["local", "ray"] = "local"
        address: str | None = None  # a Ray cluster's; needs executor: ray
        wandb: bool = False  # also log each run to W&B

        @property
        def methods(self) -> list[str]:
            return split_list(self.method)

    return RunConfig


def parse_set(pairs: list[str]) -> dict[str, Any]:
    """``["epochs=3", "method_options.scale=0"]`` → ``{"epochs": 3, "method_options": {"scale": 0}}``."""
    import yaml

    values: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        value = yaml.safe_load(raw)
        if "." in key:  # method_options.scale=0 -> {"method_options": {"scale": 0}}
            head, tail = key.split(".", 1)
            values.setdefault(head, {})[tail] = value
        else:
            values[key] = value
    return values


def split_list(value: list[str] | str) -> list[str]:
    """``"bp,dfa"`` or ``["bp", "dfa,shallow"]`` → the items, stripped."""
    items = value if isinstance(value, list) else [value]
    return [m.strip() for item in items for m in item.split(",") if m.strip()]


def read_config_file(path: str) -> dict[str, Any]:
    import yaml

    try:
        given = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read config {path}: {err}".splitlines()[0]) from None
    if not isinstance(given, dict):
        raise ConfigError(f"config {path} must be a mapping")
    if not isinstance(given.get("set", {}), dict):
        raise ConfigError(f"config {path}: key set must be a mapping of hyper-parameters, "
                          f"not a {type(given['set']).__name__}")
    return given


def run_config(options: dict[str, Any], config_file: str | None = None):
    """The validated configuration: ``config_file``'s keys, then every option given on the command line
    (None: not given; ``set`` pairs merge into the file's, ``compile`` sets ``capture``)."""
    from pydantic import ValidationError

    given = read_config_file(config_file) if config_file else {}
    for key, value in options.items():
        if key == "set":
            given["set"] = {**given.get("set", {}), **parse_set(value or [])}
        elif value is not None and value is not False and value != []:
            given[key] = value
    try:
        config = _model()(**given)
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"config key {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if config.compile:
        config.set = {**config.set, "capture": True}
    if not config.selectors:
        raise ConfigError("no selector given: e.g. dfabench run 'mlp/*/*'")
    if not config.methods:
        raise ConfigError(f"no method given in --method {config.method!r}: e.g. --method bp,dfa")
    if config.address and config.executor != "ray":
        raise ConfigError("--address needs --executor ray")
    if config.budget is not None:  # a bad budget is refused before anything runs
        from .compute import parse_budget

        parse_budget(config.budget)
    check_device(config.device, will_run=False)
    return config


def check_device(device: str, will_run: bool) -> None:
    """An unknown device is bad input; so is CUDA that torch cannot see when something will train."""
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"unknown device {device!r}; use cpu or cuda")
    if will_run and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda asked for, but torch sees no CUDA device")
