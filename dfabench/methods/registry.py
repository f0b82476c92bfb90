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


def register_variant(name: str, base: type[Method], summary: str, requires_tags: frozenset[str] = frozenset(),
                     **defaults) -> type[Method]:
    """A named method that is ``base`` with other default options (its own rows in the tables).

    User options still override the defaults, e.g. ``dfa-micro`` is ``dfa`` acting on the points
    tagged ``micro`` as well as the default ones.
    """

    def __init__(self, options: dict | None = None):
        base.__init__(self, {**defaults, **(options or {})})

    variant = type(base.__name__ + "_" + name.replace("-", "_"), (base,),
                   {"name": name, "summary": summary, "__init__": __init__, "defaults": defaults,
                    "requires_tags": frozenset(requires_tags)})
    return register(variant)


def create(name: str, options: dict | None = None) -> Method:
    try:
        cls = METHODS[name]
    except KeyError:
        raise UnknownMethod(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}") from None
    return cls(options)
