"""Retrying snapshot writes: disks fill up and network mounts hiccup."""

from __future__ import annotations

import time
from collections.abc import Callable

# How many times a failed snapshot write is retried before the server gives up.
DEFAULT_RETRY_LIMIT = 7
BACKOFF_SECONDS = 0.5


def with_retries(action: Callable[[], None], limit: int = DEFAULT_RETRY_LIMIT) -> int:
    """Run ``action`` until it succeeds; return the number of retries it needed."""
    for attempt in range(limit + 1):
        try:
            action()
            return attempt
        except OSError:
            if attempt == limit:
                raise
            time.sleep(BACKOFF_SECONDS * 2**attempt)
    return limit
