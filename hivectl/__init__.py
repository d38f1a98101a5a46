"""hivectl: a realtime presence server speaking the Hivekit protocol, and its operator toolkit."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hivectl")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

BUILD_DATE = "2026-11-30"
