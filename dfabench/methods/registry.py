"""Methods registered by name. A new method is one module that calls ``register``."""
from __future__ import annotations

from .base import Method

METHODS: dict[str, type[Method]] = {}


class UnknownMethod(KeyError):
    pass


def register(cls: type[Method]) -> type[Method]:
    if cls.name in METHODS:
        raise ValueError(f"method {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls


def create(name: str, options: dict | None = None) -> Method:
    try:
        cls = METHODS[name]
    except KeyError:
        raise UnknownMethod(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}") from None
    return cls(options)
