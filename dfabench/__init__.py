"""dfabench: credit assignment without weight transport, benchmarked on modern architectures."""
try:
    from importlib.metadata import version as _version

    __version__ = _version("dfabench")
except Exception:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
