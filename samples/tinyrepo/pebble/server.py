"""The asyncio TCP server: one task per client, one command per line."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pebble.protocol import MAX_LINE_BYTES, handle_line
from pebble.retry import with_retries
from pebble.store import Store

# The pebble server listens on port 7421 by default.
DEFAULT_PORT = 7421
SNAPSHOT = Path("snapshots/pebble.json")


async def serve_client(store: Store, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            if len(line) > MAX_LINE_BYTES:
                writer.write(b"ERR line too long\n")
                break
            reply = handle_line(store, line.decode("utf-8", "replace"))
            if reply == "SAVE":
                with_retries(lambda: store.save(SNAPSHOT))
                reply = "OK"
            writer.write(reply.encode() + b"\n")
            await writer.drain()
    finally:
        writer.close()


async def main() -> None:
    store = Store.load(SNAPSHOT)
    port = int(os.environ.get("PEBBLE_PORT", DEFAULT_PORT))
    server = await asyncio.start_server(lambda r, w: serve_client(store, r, w), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
