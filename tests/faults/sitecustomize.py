"""Fault injection for the reliability tests. Python imports this module at start-up in every
process of a run whose PYTHONPATH holds this directory (the CLI, torchrun and each rank); it does
nothing unless asked by an environment variable.

``STARCLI_TEST_OOM=RANK:PHASE`` (PHASE ``phase1`` or ``decode``): that rank asks torch for more
memory than any machine has in its second forward pass of that phase, so the allocation itself
fails as it does when memory runs out (torch's CPU allocator raises a RuntimeError; CUDA's raises
``torch.OutOfMemoryError``).

``STARCLI_TEST_STALL=SECONDS``: every rank of the run sleeps that long in its second phase-1 forward
pass (the multi-node tests set it on one node only, to stop that node while the other waits).

``STARCLI_TEST_NETWORK_LOG=PATH``: every connection to an address that is not loopback is refused
and recorded in PATH (one line per attempt, with the process's pid and argv).
"""

from __future__ import annotations

import os


def _inject_oom(rank: str, phase: str) -> None:
    if os.environ["RANK"] != rank:
        return
    import torch

    from engine.cache import StarCache
    from engine.runner import ModelRunner

    phases = {"phase1": ("anchor", "block"), "decode": ("query",)}[phase]
    forward = ModelRunner.forward
    calls = []

    def failing_forward(self, ids, position, cache):
        if isinstance(cache, StarCache) and cache.phase in phases:
            calls.append(position)
            if len(calls) == 2:  # phase 1: after one block; decode: after the query's prefill
                torch.empty(1 << 60, dtype=torch.uint8, device=self.device)
        return forward(self, ids, position, cache)

    ModelRunner.forward = failing_forward


def _inject_stall(seconds: str) -> None:
    import time

    from engine.cache import StarCache
    from engine.runner import ModelRunner

    forward = ModelRunner.forward
    calls = []

    def stalling_forward(self, ids, position, cache):
        if isinstance(cache, StarCache) and cache.phase in ("anchor", "block"):
            calls.append(position)
            if len(calls) == 2:
                time.sleep(float(seconds))
        return forward(self, ids, position, cache)

    ModelRunner.forward = stalling_forward


def _guard_network(log_path: str) -> None:
    import ipaddress
    import socket
    import sys

    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def refused(sock, address) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return False
        host = address[0]
        try:
            if ipaddress.ip_address(host.split("%")[0]).is_loopback:
                return False
        except ValueError:
            if host == "localhost":
                return False
        with open(log_path, "a") as log:
            log.write(f"{os.getpid()} {' '.join(sys.argv)} -> {address!r}\n")
        return True

    def guarded_connect(sock, address):
        if refused(sock, address):
            raise OSError(101, "network access refused by the test")
        return connect(sock, address)

    def guarded_connect_ex(sock, address):
        return 101 if refused(sock, address) else connect_ex(sock, address)

    socket.socket.connect, socket.socket.connect_ex = guarded_connect, guarded_connect_ex


if os.environ.get("STARCLI_TEST_NETWORK_LOG"):
    _guard_network(os.environ["STARCLI_TEST_NETWORK_LOG"])
if os.environ.get("STARCLI_TEST_OOM") and "RANK" in os.environ:
    _inject_oom(*os.environ["STARCLI_TEST_OOM"].split(":"))
if os.environ.get("STARCLI_TEST_STALL") and "RANK" in os.environ:
    _inject_stall(os.environ["STARCLI_TEST_STALL"])
