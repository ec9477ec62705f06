"""The in-memory store. Values are strings; snapshots are JSON files written atomically."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path


class Store:
    def __init__(self) -> None:
        self._data: dict[str, str] = {}

    def set(self, key: str, value: str) -> None:
        self._data[key] = value

    def get(self, key: str) -> str | None:
        return self._data.get(key)

    def delete(self, key: str) -> bool:
        return self._data.pop(key, None) is not None

    def keys(self) -> list[str]:
        return sorted(self._data)

    def save(self, path: Path) -> None:
        """Write a snapshot: to a temporary file first, then renamed over the old one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(self._data, handle, sort_keys=True)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Store:
        store = cls()
        if path.exists():
            store._data = json.loads(path.read_text())
        return store

    def export_csv(self, path: Path) -> None:
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["key", "value"])
            for key in self.keys():
                writer.writerow([key, self._data[key]])
