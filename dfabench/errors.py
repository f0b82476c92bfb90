"""The two kinds of refusal the command line turns into exit code 2 (one line on stderr, nothing written).

Kept free of heavy imports (no torch) so that every layer, the CLI included, can raise and catch them.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input: reported as one line, exit code 2, nothing written."""


class DataError(ConfigError):
    """Data a reader can tell is wrong or missing (a file, a column, a label, an empty split), found
    before anything trains. The message names the file and, where it helps, the line or field."""
