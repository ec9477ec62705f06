"""A small command-line client: ``python -m pebble.client GET greeting``."""

from __future__ import annotations

import argparse
import socket
import sys

from pebble.server import DEFAULT_PORT


def send(command: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT, timeout: float = 5.0) -> str:
    """Send one command and return the server's one-line reply."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(command.encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.decode("utf-8", "replace").rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pebble", description="Talk to a pebble server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("command", nargs="+", help="for example: SET greeting hello")
    args = parser.parse_args(argv)
    try:
        reply = send(" ".join(args.command), args.host, args.port)
    except OSError as exc:
        print(f"pebble: cannot reach {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(reply)
    return 0 if not reply.startswith("ERR") else 2


if __name__ == "__main__":
    sys.exit(main())
