"""Whether a run fits its device (issue 16): what the device has free (a GPU's free memory, or a
machine's available memory within its cgroup's limit, read where reading it costs the run
nothing) against ``engine.memory``'s estimate, and the refusal that names both figures."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from engine.errors import NotEnoughMemoryError
from engine.memory import GiB, MemoryEstimate, ModelShape, estimate
from engine.plan import CostModel, plan_blocks
from engine.runplan import RunPlan
from engine.settings import MIN_BLOCK_SIZE, Attention, KVDtype

# Per CPU rank process that torchrun starts: Python, torch and transformers themselves (the CLI's
# own process has them already, so the free figure it reads is net of its own).
CPU_PROCESS = 768 << 20


@dataclass(frozen=True)
class Budget:
    """The memory a run may use: ``free`` bytes on each device, shared by ``ranks_per_device``
    ranks (every rank of a machine on CPU, one on each GPU), read by ``probe_budget``."""

    free: int
    ranks_per_device: int
    where: str  # "cuda:0", "cpu"


def needed(estimates: list[MemoryEstimate], budget: Budget) -> int:
    """The most any one device must hold: the heaviest group of ranks sharing a device (on CPU
    each torchrun rank also brings its own Python, torch and transformers)."""
    per = max(1, budget.ranks_per_device)
    extra = CPU_PROCESS if budget.where == "cpu" and len(estimates) > 1 else 0
    groups = [estimates[i : i + per] for i in range(0, len(estimates), per)]
    return max(sum(e.peak + extra for e in group) for group in groups)


def check_budget(
    plan: RunPlan,
    shape: ModelShape,
    budget: Budget,
    cost: CostModel | None = None,
    kv_bytes: int | None = None,
) -> list[MemoryEstimate]:
    """The plan's estimates, or ``NotEnoughMemoryError`` when the heaviest device's exceeds its
    free memory: one line with both figures, what makes up the estimate, the largest power-of-two
    block size whose estimate fits (star; for dense modes, star with it), and the other ways out."""
    estimates = estimate(plan, shape, kv_bytes)
    need = needed(estimates, budget)
    if need <= budget.free:
        return estimates
    worst = max(estimates, key=lambda e: e.peak)
    parts = f"weights {_gib(worst.weights)} + KV cache {_gib(worst.kv_cache)} + work {_gib(worst.work)}"
    if budget.ranks_per_device > 1 and len(estimates) > 1:
        parts = f"{min(budget.ranks_per_device, len(estimates))} ranks sharing it, the largest {parts}"
    ways = []
    if not plan.kv_fp8 and plan.attention != Attention.GLOBAL and kv_bytes is None:
        fp8 = estimate(replace(plan, kv_dtype=KVDtype.FP8), shape)
        if needed(fp8, budget) <= budget.free:  # half the KV: often enough on its own
            ways.append(f"--kv-dtype fp8 (estimated {_gib(max(e.peak for e in fp8))})")
    block = fitting_block(plan, shape, budget, cost, kv_bytes)
    if block is not None:
        size, peak = block
        star = "" if plan.attention == Attention.STAR else "--attention star "
        ways.append(f"{star}--block-size {size} (estimated {_gib(peak)})")
    if budget.where != "cpu":
        ways.append("more ranks (--nproc: each holds a share of the KV cache)")
    elif len(estimates) > 1:
        ways.append("fewer ranks (--nproc: each holds the weights in this machine's memory)")
    else:
        ways.append("ranks on more machines (--nnodes, --nproc)")
    ways.append("a shorter input")
    raise NotEnoughMemoryError(
        f"not enough memory: the run needs an estimated {_gib(need)} at its peak on {budget.where} "
        f"({parts}), but {_gib(budget.free)} is free; use {', '.join(ways[:-1])} or {ways[-1]}; "
        "STARCLI_MEMORY_CHECK=0 runs it anyway"
    )


def fitting_block(
    plan: RunPlan,
    shape: ModelShape,
    budget: Budget,
    cost: CostModel | None = None,
    kv_bytes: int | None = None,
) -> tuple[int, int] | None:
    """The largest power-of-two block size (below the plan's, at least ``MIN_BLOCK_SIZE``) whose
    star plan fits ``budget``, with its estimated need; None where none does (then the weights and
    the KV cache alone leave too little)."""
    n = plan.context_tokens
    top = plan.block_size if plan.attention == Attention.STAR else n
    size = 1 << max(0, (top - 1).bit_length() - 1) if top > 1 else 1
    base = plan if plan.attention == Attention.STAR else replace(plan, attention=Attention.STAR)
    while size >= MIN_BLOCK_SIZE:
        anchor = min(plan.anchor_size, size) if plan.attention == Attention.STAR else None
        layout = plan_blocks(n, size, anchor, plan.world_size, cost, share_anchor=plan.layout.anchor_shared)
        candidate = replace(base, layout=layout, block_size=size, anchor_size=layout.anchor_size)
        need = needed(estimate(candidate, shape, kv_bytes), budget)
        if need <= budget.free:
            return size, need
        size //= 2
    return None


def _gib(size: int) -> str:
    return f"{size / GiB:.2f} GiB"


def probe_budget(plan: RunPlan, nnodes: int = 1, every_gpu: bool = False) -> Budget | None:
    """What this machine has free for ``plan``: on CPU the available memory, shared by its ranks;
    on CUDA the free memory of the GPU this process runs its one rank on, or with ``every_gpu``
    the least free of this machine's ranks' GPUs (the dry run: it exits at once). None where this
    process should not read it (a torchrun job's ranks read their own GPU) or cannot."""
    per_node = max(1, plan.world_size // max(1, nnodes))
    try:
        if plan.device == "cuda":
            if plan.world_size > 1 and not every_gpu:
                return None
            indices = range(per_node) if plan.world_size > 1 else [None]
            free = min(free_bytes("cuda", index) for index in indices)
            return Budget(free, 1, "cuda" if plan.world_size > 1 else "cuda:0")
        free = free_bytes("cpu")
    except Exception:  # noqa: BLE001 - a device that cannot say: the run finds out itself
        return None
    return None if free is None else Budget(free, per_node, "cpu")


def free_bytes(device: str, index: int | None = None) -> int | None:
    """Memory free for a run on ``device``: ``torch.cuda.mem_get_info`` of GPU ``index`` (the
    current one by default; this creates the process's CUDA context there); on CPU, the kernel's
    available memory, within this cgroup's limit. None where it cannot be read."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(index)[0])
    return _cpu_available()


def _cpu_available() -> int | None:
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    limit = _cgroup_room()
    return available if limit is None else min(available, limit)


def _cgroup_room() -> int | None:
    """What this cgroup (v2) may still allocate, where it has a limit."""
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((root / "memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None
