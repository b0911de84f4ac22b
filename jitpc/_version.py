"""The package version, in one place (``jitpc.__version__``, ``rpc.status``, the CLI)."""

__version__ = "0.1.0"
