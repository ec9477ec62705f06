"""One rank of a multi-process job (``python -m engine``, started by torchrun).

Every rank loads the model and runs the same request; events go, one JSON line per
``os.write`` on an ``O_APPEND`` file, to the path the launcher named: the query host writes
everything, the other ranks their start, load, phase-1 progress and failures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from engine.api import Engine, Request
from engine.comm import Comm, DistComm
from engine.errors import InputMismatchError, OutOfMemoryError, StarcliError, is_out_of_memory
from engine.events import Event, Failure, Joined, Loaded, Progress, Started, phase_after
from engine.models import load_model


class EventWriter:
    """Line-atomic JSON-lines writer; ``-`` means stdout."""

    def __init__(self, path: str):
        self.fd = 1 if path == "-" else os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, event: Event) -> None:
        os.write(self.fd, (event.to_json() + "\n").encode())


def _watch_launcher(pid: int) -> None:
    """Exit if the launcher dies (even by SIGKILL), so that no rank outlives the job."""

    def watch() -> None:
        while True:
            time.sleep(0.5)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass

    threading.Thread(target=watch, daemon=True).start()


def follow_queries(path: Path, poll_s: float = 0.02) -> Iterator[dict]:
    """The conversation's queries as the launcher appends them (one JSON line each), until
    ``{"end": true}``; every rank reads the same file, so all answer the same queries in order."""
    buffer = b""
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read()
            if not chunk:
                time.sleep(poll_s)
                continue
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                turn = json.loads(line)
                if turn.get("end"):
                    return
                yield turn


def _digest(value: object) -> int:
    """A 63-bit hash of ``value``'s JSON: the same on every machine for the same value."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


def check_same_input(request: Request, device: torch.device, per_node: int, hosts: list[str]) -> None:
    """On several machines every node tokenizes its own sources: before any work, all ranks
    compare the hashes of their token ids and run plans (one all-gather), and every rank stops
    with the same error, naming the first node that differs from node 0, if any does."""
    plan = request.plan.to_dict() if request.plan else None
    mine = torch.tensor([_digest([request.context, request.queries]), _digest(plan)], device=device)
    gathered = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, mine)
    for rank, theirs in enumerate(gathered):
        tokens_differ, plan_differs = (bool(x) for x in (theirs != gathered[0]).tolist())
        if tokens_differ or plan_differs:
            what = "sources (token ids)" if tokens_differ else "settings (run plan)"
            raise InputMismatchError(
                f"node {rank // per_node} ({hosts[rank]}, rank {rank}) read different {what} from node 0 "
                f"({hosts[0]}); every node must read identical sources with the same model, flags and "
                "settings"
            )


def check_gpu_memory(plan, model: str | None, device: torch.device) -> None:
    """Refuse (``NotEnoughMemoryError``) a plan whose estimated peak exceeds this rank's GPU's free
    memory (``engine.memory``); a model whose config cannot be read here is left to run."""
    from transformers import AutoConfig

    from engine.memory import ModelShape
    from engine.memory_budget import Budget, check_budget, free_bytes
    from engine.models import default_model_config, is_default
    from engine.plan import CostModel

    try:
        if is_default(model):
            config = default_model_config()
        else:
            config = AutoConfig.from_pretrained(model, local_files_only=True)
        shape = ModelShape.for_config(config)
    except Exception:  # noqa: BLE001 - no estimate: the run finds out for itself
        return
    budget = Budget(free_bytes("cuda", device.index), 1, str(device))
    check_budget(plan, shape, budget, CostModel.for_config(config))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    parser.add_argument("--request", required=True, help="request JSON file (engine.Request.to_json)")
    parser.add_argument("--events", default="-", help="JSON-lines event file, or - for stdout")
    parser.add_argument(
        "--model", default=None, help="model name, directory or hub id (default model if unset)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda, for a request without a run plan")
    parser.add_argument("--launcher-pid", type=int, default=None, help="exit when this process is gone")
    parser.add_argument(
        "--queries",
        default=None,
        help="a conversation: after the request's own queries, answer each JSON line appended to this "
        'file ({"query": ids, "index": i, "follow_up": bool}) until {"end": true}',
    )
    args = parser.parse_args(argv)

    writer = EventWriter(args.events)
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    node = int(os.environ.get("GROUP_RANK", "0"))
    phase = "startup"
    if args.launcher_pid:
        _watch_launcher(args.launcher_pid)
    try:
        writer.write(Started(rank=rank, pid=os.getpid(), world_size=world, node=node))
        request = Request.from_json(Path(args.request).read_text())
        plan = request.plan
        options = plan.options if plan else request.settings.options
        device = torch.device(plan.device if plan else args.device)
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        comm: Comm = Comm()
        if world > 1:
            dist.init_process_group(
                backend="nccl" if device.type == "cuda" else "gloo",
                timeout=timedelta(seconds=options.collective_timeout_s),
            )
            comm = DistComm(device)
            if per_node < world:  # several machines: each read its own sources
                hosts: list[str] = [""] * world
                dist.all_gather_object(hosts, socket.gethostname())
                if int(os.environ.get("LOCAL_RANK", "0")) == 0:
                    writer.write(Joined(hosts=hosts))
                check_same_input(request, device, per_node, hosts)
        if plan is not None and device.type == "cuda" and plan.options.memory_check:
            check_gpu_memory(plan, args.model, device)  # before the weights: the CLI reads no GPU of a job
        phase = "model load"
        started = time.perf_counter()
        loaded = load_model(args.model, device, plan.dtype if plan else None)
        load_s = time.perf_counter() - started
        weights_in = Loaded(rank=rank, seconds=load_s)  # phase 1 starts now, not at its first block
        writer.write(weights_in)
        phase = phase_after(weights_in, phase)
        engine = Engine(loaded.model, loaded.tokenizer, comm, load_s=load_s)

        def forward(events) -> object:
            """Write a generator's events as this rank should; return its return value."""
            nonlocal phase
            while True:
                try:
                    event = next(events)
                except StopIteration as done:
                    return done.value
                phase = phase_after(event, phase)
                if comm.is_host or isinstance(event, Progress):
                    writer.write(event)

        encoded = forward(engine.run(request))
        if args.queries:
            for turn in follow_queries(Path(args.queries)):
                forward(engine.answer(encoded, turn["query"], turn["index"], follow_up=turn["follow_up"]))
        return 0
    except StarcliError as exc:
        writer.write(Failure(rank=rank, phase=phase, error_type=type(exc).__name__, message=str(exc)))
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - reported to the launcher, traceback to stderr
        # One name for every allocation failure (torch's CPU allocator raises a plain RuntimeError),
        # so that the launcher can name the ways out.
        kind = OutOfMemoryError.__name__ if is_out_of_memory(exc) else type(exc).__name__
        writer.write(Failure(rank=rank, phase=phase, error_type=kind, message=str(exc)))
        traceback.print_exc(file=sys.stderr)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
