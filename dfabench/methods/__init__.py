"""Credit-assignment methods. Importing this package registers the built-in ones."""
from . import bp, dfa, shallow  # noqa: F401  (registration side effect)
from .base import Method
from .registry import METHODS, UnknownMethod, create, register, register_variant

__all__ = ["METHODS", "Method", "UnknownMethod", "create", "register", "register_variant"]
