"""One command per line, one reply per line."""

from __future__ import annotations

from pebble.store import Store

MAX_LINE_BYTES = 64 * 1024


def handle_line(store: Store, line: str) -> str:
    """Run one command against the store and return the reply line (without newline)."""
    parts = line.strip().split(" ", 2)
    command = parts[0].upper() if parts and parts[0] else ""
    if command == "SET" and len(parts) == 3:
        store.set(parts[1], parts[2])
        return "OK"
    if command == "GET" and len(parts) == 2:
        value = store.get(parts[1])
        return "NIL" if value is None else value
    if command == "DEL" and len(parts) == 2:
        return "OK" if store.delete(parts[1]) else "NIL"
    if command == "KEYS" and len(parts) == 1:
        return " ".join(store.keys())
    if command == "SAVE" and len(parts) == 1:
        return "SAVE"  # the server performs the write, with retries
    return f"ERR unknown command: {line.strip()[:40]}"
