"""Phase 1's result on disk: each rank saves its own blocks' KV after encoding and loads it back
on a later run of the same context, model and plan, instead of encoding again.

Files are safetensors (already a dependency of transformers): one per rank, written to a temporary
name and renamed, with a header (``metadata``) that carries the entry's key, the rank, the sizes
and a CRC-32 of every tensor. A file is trusted only when all of that matches what this run
expects; anything else (damaged, foreign, from another plan) is deleted and the context encoded
again, and every rank must find its own file good or all of them encode (``Comm.all_true``).

The key (``context_key``) covers everything the KV depends on: the engine's code, the model and
its weights, dtype, device kind and CPU threads, the context's token ids and the plan's phase-1
part (attention, positions, blocks and their ranks, anchor, engine options that change rounding).
Never the query or the answer settings: any question may follow.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import zlib
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine import context_store
from engine.cache import StarCache, allocate_context
from engine.context_store import StoreSpec
from engine.modes.dense import GrowingLayer, growing_dynamic_cache
from engine.runner import EncodedContext, ModelRunner
from engine.runplan import RunPlan
from engine.settings import Attention

HIT, MISS, OFF = "hit", "miss", "off"

# How fast a saved context loads and is written, in bytes of KV per second, by device kind; the
# CRC-32 of every tensor is inside both, as every load and save pays it. Load: reading the file,
# the CRC, the copy into the cache's buffers. CPU: 290 MB in a median 0.36 s on the 2-core VM
# (docs/saved-context-cpu.json). CUDA: 2.43 GB/s on an H200 with the page cache warm, as a hit on
# the file a miss just wrote finds it (cold: 1.10-1.33 GB/s; at 128K tokens 1.01 s of the 1.24 s
# is the CRC pass, which also pulls the mapped pages in), docs/saved-context-gpu.json. Save: the
# copy off the device, the CRC, the write: CPU 290 MB in 2.1-3.4 s (0.086-0.14 GB/s); CUDA 0.75
# GB/s at 32K tokens, 0.65 GB/s at 128K (0.75 and 3.0 GB in 1.00 and 4.62 s). Rounded down.
LOAD_BYTES_PER_S = {"cpu": 0.8e9, "cuda": 2.4e9}
SAVE_BYTES_PER_S = {"cpu": 0.08e9, "cuda": 0.65e9}


def context_key(spec: StoreSpec, plan: RunPlan, context: list[int], runner: ModelRunner) -> str:
    """The entry's key for this rank's view of the run (the same on every rank of one host)."""
    device = runner.device
    kind = f"cuda:{torch.cuda.get_device_name(device)}" if device.type == "cuda" else "cpu"
    if device.type == "cpu":
        kind += f":{torch.get_num_threads()}-threads"  # reductions may round differently
    options = plan.options
    parts = {
        "format": context_store.FORMAT,
        "engine": context_store.engine_stamp(),
        "model": spec.model_key,
        "device": kind,
        "dtype": str(next(runner.model.parameters()).dtype),
        "tokens": len(context),
        "ids": hashlib.blake2b(torch.tensor(context, dtype=torch.int64).numpy().tobytes()).hexdigest(),
        "attention": str(plan.attention),
        "positions": str(plan.positions),
        "layout": asdict(plan.layout),
        "world": plan.world_size,
        "window": plan.window,
        "correction": [str(plan.correction), plan.delta_stride],
        "kv_dtype": str(plan.kv_dtype),
        "options": [options.share_anchor, options.compile, options.fused, str(options.kernels)],
    }
    return context_store.entry_key(json.loads(json.dumps(parts)))


def kv_bytes(config, tokens: int, dtype: torch.dtype, fp8: bool = False) -> int:
    """The KV of ``tokens`` context tokens over every layer (what all ranks save together); fp8:
    one byte an element plus a float32 scale per token and head (``kernels.quant``)."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    per_head = head_dim + 4 if fp8 else head_dim * torch.empty((), dtype=dtype).element_size()
    return 2 * config.num_hidden_layers * kv_heads * per_head * tokens


def worth_saving(entry_bytes: int, encode_s: float, device_type: str) -> bool:
    """Whether the entry pays for itself by the first hit: writing it now and loading it once, at
    the device's measured rates, against the phase 1 this run just measured. The save is paid
    before this run's answer (so that the entry exists even if the answer is interrupted) and how
    many hits follow is unknown, so one hit must win it back. On a CPU that holds by far (4 s
    against 74 s at 6.3K tokens); on an H200 the default model's bf16 KV at 32K and 128K tokens
    takes longer to write and load once (1.5 s, 5.9 s) than its phase 1 ran in a fresh process
    (1.2 s, 1.8-2.8 s), so it stays in memory only (``chat``, ``--also``): docs/benchmarks.md,
    issue 14. A device kind not measured is taken at the CPU's rates."""
    load = LOAD_BYTES_PER_S.get(device_type, LOAD_BYTES_PER_S["cpu"])
    write = SAVE_BYTES_PER_S.get(device_type, SAVE_BYTES_PER_S["cpu"])
    return entry_bytes / load + entry_bytes / write < encode_s


def savable(encoded: EncodedContext) -> bool:
    """Star and ring caches always; a dense cache only when every layer is a plain growing one
    (sliding-window layers keep state this module does not restore)."""
    cache = encoded.cache
    return isinstance(cache, StarCache) or all(type(layer) is GrowingLayer for layer in cache.layers)


def save(path: Path, key: str, encoded: EncodedContext, rank: int, world: int) -> None:
    """Write this rank's file (temporary name, then rename); raises OSError on failure."""
    tensors, meta = _tensors_and_meta(encoded)
    crcs = {}
    for name, tensor in tensors.items():
        tensors[name] = tensor.contiguous().cpu()
        crcs[name] = _crc(tensors[name])
    meta.update(key=key, rank=rank, world=world, format=context_store.FORMAT, crc=crcs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, tmp, metadata={"starcli": json.dumps(meta)})
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def load(
    path: Path, key: str, runner: ModelRunner, plan: RunPlan, rank: int, world: int
) -> StarCache | object | None:
    """This rank's cache from ``path``, or None when the file is missing or not exactly what this
    run expects (then it is deleted, so that the encoding that follows rewrites it)."""
    if not path.is_file():
        return None
    try:
        return _read(path, key, runner, plan, rank, world)
    except Exception:  # noqa: BLE001 - damaged or foreign: never trusted, removed, rewritten
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def _tensors_and_meta(encoded: EncodedContext) -> tuple[dict[str, torch.Tensor], dict]:
    cache, tensors = encoded.cache, {}
    if isinstance(cache, StarCache):
        for i in range(len(cache.layers)):
            k, v = cache.context_kv(i)
            if k is not None:
                tensors[f"k.{i}"], tensors[f"v.{i}"] = k, v
            scales = cache.context_scales(i)
            if scales is not None:  # fp8 KV: the per-token scales beside the values
                tensors[f"ks.{i}"], tensors[f"vs.{i}"] = scales
        meta = {
            "kind": "star",
            "layers": len(cache.layers),
            "context_len": cache.context_len,
            "local_context": cache.local_context,
            "context_tokens": cache.context_tokens,
            "spans": [list(span) for span in cache.context_spans],
            "kv_fp8": cache.kv_fp8,
        }
        return tensors, meta
    for i, layer in enumerate(cache.layers):
        tensors[f"k.{i}"], tensors[f"v.{i}"] = layer.keys, layer.values
    meta = {"kind": "dense", "layers": len(cache.layers), "context_len": encoded.tokens}
    return tensors, meta


def _read(path: Path, key: str, runner: ModelRunner, plan: RunPlan, rank: int, world: int):
    config = runner.model.config
    layers = config.num_hidden_layers
    dtype = next(runner.model.parameters()).dtype
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        meta = json.loads((handle.metadata() or {})["starcli"])
        expected = {"key": key, "rank": rank, "world": world, "layers": layers}
        expected["format"] = context_store.FORMAT
        if any(meta.get(name) != value for name, value in expected.items()):
            raise ValueError("a foreign entry")
        kind = "dense" if plan.attention == Attention.GLOBAL else "star"
        if meta["kind"] != kind:
            raise ValueError("another attention mode's entry")
        names = set(handle.keys())
        if names != set(meta["crc"]):
            raise ValueError("tensors missing or extra")

        fp8 = kind == "star" and plan.kv_fp8
        if kind == "star" and meta.get("kv_fp8", False) != fp8:
            raise ValueError("another KV dtype's entry")

        def tensor(name: str) -> torch.Tensor:
            value = handle.get_tensor(name)
            scale = name.startswith(("ks.", "vs."))
            want = torch.float32 if scale else (torch.float8_e4m3fn if fp8 else dtype)
            if (
                value.dtype != want
                or value.dim() != (3 if scale else 4)
                or value.shape[2] != meta["context_len"]
            ):
                raise ValueError(f"{name}: unexpected shape or dtype")
            if _crc(value) != meta["crc"][name]:
                raise ValueError(f"{name}: checksum mismatch")
            return value.to(runner.device)

        room = plan.query_tokens + plan.max_tokens
        if kind == "dense":
            cache = growing_dynamic_cache(config, room=room)
            if len(names) != 2 * layers or not all(type(layer) is GrowingLayer for layer in cache.layers):
                raise ValueError("not a plain dense cache")
            for i, layer in enumerate(cache.layers):
                layer.update(tensor(f"k.{i}"), tensor(f"v.{i}"))
            return cache
        layout = plan.layout
        local = sum(layout.blocks[i][1] - layout.blocks[i][0] for i in layout.ranks[rank])  # ring: 2 chunks
        if meta["local_context"] != local or meta["context_tokens"] != plan.context_tokens:
            raise ValueError("another plan's entry")
        cache = StarCache(
            layers, runner.comm, meta["local_context"], meta["context_tokens"], tail_room=room, kv_fp8=fp8
        )
        cache.context_spans = tuple(tuple(span) for span in meta["spans"])
        if names and len(names) != (4 if fp8 else 2) * layers:
            raise ValueError("layers missing")
        for i, layer in enumerate(cache.layers if names else ()):
            k, v = tensor(f"k.{i}"), tensor(f"v.{i}")
            size = cache.local_context + cache.tail_room
            k_shape, v_shape = (*k.shape[:2], size, k.shape[3]), (*v.shape[:2], size, v.shape[3])
            allocate_context(layer, k_shape, v_shape, k.dtype, k.device, fp8)  # fp8: cache's V layout
            layer.context_k[:, :, : k.shape[2]] = k
            layer.context_v[:, :, : v.shape[2]] = v
            if fp8:
                layer.context_ks[:, :, : k.shape[2]] = tensor(f"ks.{i}")
                layer.context_vs[:, :, : v.shape[2]] = tensor(f"vs.{i}")
        cache.context_len = meta["context_len"]
        return cache


def _crc(tensor: torch.Tensor) -> int:
    return zlib.crc32(tensor.contiguous().view(torch.uint8).numpy())


class SavedContexts:
    """One run's use of the store: find this rank's file, save it after a miss, keep the store
    within its size (the query host, once every rank has written)."""

    def __init__(self, spec: StoreSpec, runner: ModelRunner, plan: RunPlan, context: list[int]):
        self.spec, self.runner, self.plan = spec, runner, plan
        self.directory = Path(spec.directory)
        self.key = context_key(spec, plan, context, runner)
        comm = runner.comm
        self.path = context_store.rank_file(self.directory, self.key, comm.rank, comm.world_size)
        dtype = next(runner.model.parameters()).dtype
        self.bytes = kv_bytes(runner.model.config, plan.context_tokens, dtype, plan.kv_fp8)

    def load(self) -> tuple[object | None, float]:
        """This rank's cache (or None) and the seconds it took."""
        started = time.perf_counter()
        comm = self.runner.comm
        cache = load(self.path, self.key, self.runner, self.plan, comm.rank, comm.world_size)
        self.runner.synchronize()
        return cache, time.perf_counter() - started

    def save(self, encoded: EncodedContext) -> bool:
        """Save this rank's part (not when the whole entry would exceed the store's size, nor
        when writing and loading it once would take longer than phase 1 ran: ``worth_saving``);
        the host then records the entry and evicts the least recently used ones. Saving is never
        worth failing a run for: an unwritable cache only means encoding again next time."""
        comm = self.runner.comm
        encode_s = max(encoded.rank_seconds, default=encoded.seconds)  # the same on every rank
        faster = worth_saving(self.bytes, encode_s, self.runner.device.type)
        wanted = self.bytes <= self.spec.max_bytes and savable(encoded) and faster
        ok = False
        if wanted:
            try:
                save(self.path, self.key, encoded, comm.rank, comm.world_size)
                ok = True
            except OSError:
                ok = False
        ok = comm.all_true(ok)
        if comm.is_host and wanted:
            with contextlib.suppress(OSError):
                if ok:
                    info = {
                        "tokens": self.plan.context_tokens,
                        "attention": str(self.plan.attention),
                        "positions": str(self.plan.positions),
                        "ranks": comm.world_size,
                        "block_size": self.plan.block_size,
                        "created": time.time(),
                    }
                    context_store.write_info(self.directory, self.key, info)
                context_store.evict(self.directory, self.spec.max_bytes, keep=self.key if ok else None)
        return ok

    def used(self) -> None:
        if self.runner.comm.is_host:
            context_store.touch(self.directory, self.key)
