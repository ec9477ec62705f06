"""pebble: a tiny in-memory key-value store with a line-based TCP protocol."""

from pebble.store import Store

__all__ = ["Store"]
__version__ = "0.3.0"
