"""What ranks say to each other: the (O, LSE) gather of phase 2 and the host's chosen token.

``Comm`` is the single-process version (no torch.distributed at all); ``DistComm`` wraps an
initialised process group. Rank and world size are read from the group when the object is built,
never at import time (a known trap: module-level RANK read before the group exists).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from kernels import merge_partials


class Comm:
    """One rank, no communication."""

    rank: int = 0
    world_size: int = 1

    @property
    def host(self) -> int:
        """The query host: the last rank holds the query and generated tokens' KV."""
        return self.world_size - 1

    @property
    def is_host(self) -> bool:
        return self.rank == self.host

    def merge_across_ranks(self, out: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
        """Exact softmax over all ranks' keys from each rank's partial (O, LSE)."""
        return out

    def broadcast_from_host(self, values: list[int]) -> list[int]:
        """The host's integers (next token, stop flag) on every rank."""
        return values

    def gather_floats(self, value: float) -> list[float]:
        return [value]

    def barrier(self) -> None:
        """Wait for every rank."""

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank (a barrier too): ranks that must act alike agree."""
        return flag

    def all_gather_rows(self, tensor: torch.Tensor, dim: int, same_size: bool = False) -> list[torch.Tensor]:
        """Every rank's ``tensor``, which may differ in length along ``dim`` (unless ``same_size``)."""
        return [tensor]

    @property
    def can_broadcast(self) -> bool:
        """Whether ``broadcast_async`` works (a real process group behind this object)."""
        return False

    def broadcast_async(self, tensor: torch.Tensor, src: int):
        """Start sending ``tensor`` from rank ``src`` (of this group) to every rank, in place;
        returns a handle whose ``wait()`` orders later work after its arrival."""
        raise NotImplementedError("one rank has no one to broadcast to")


class DistComm(Comm):
    """Ranks of a torch.distributed process group (gloo on CPU, NCCL on GPU)."""

    def __init__(self, device: torch.device, group: dist.ProcessGroup | None = None):
        if not dist.is_initialized():
            raise RuntimeError("DistComm needs an initialised process group")
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.device = device
        self._host_global = dist.get_global_rank(group, self.host) if group is not None else self.host

    def merge_across_ranks(self, out: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
        # One collective per layer: O and LSE travel packed as [.., D + 1] float32.
        packed = torch.cat([out.float(), lse.unsqueeze(-1)], dim=-1).contiguous()
        gathered = [torch.empty_like(packed) for _ in range(self.world_size)]
        dist.all_gather(gathered, packed, group=self.group)
        stacked = torch.stack(gathered)
        merged, _ = merge_partials(stacked[..., :-1], stacked[..., -1], out_dtype=out.dtype)
        return merged

    def broadcast_from_host(self, values: list[int]) -> list[int]:
        t = torch.tensor(values, dtype=torch.long, device=self.device)
        dist.broadcast(t, src=self._host_global, group=self.group)
        return [int(x) for x in t.tolist()]

    def gather_floats(self, value: float) -> list[float]:
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(out, t, group=self.group)
        return [float(x.item()) for x in out]

    def all_gather_rows(self, tensor: torch.Tensor, dim: int, same_size: bool = False) -> list[torch.Tensor]:
        tensor = tensor.to(self.device)
        if same_size:
            gathered = [torch.empty_like(tensor) for _ in range(self.world_size)]
            dist.all_gather(gathered, tensor.contiguous(), group=self.group)
            return gathered
        sizes = [int(s) for s in self.gather_floats(float(tensor.shape[dim]))]
        longest = max(1, *sizes)  # no zero-sized messages
        shape = list(tensor.shape)
        shape[dim] = longest - tensor.shape[dim]
        padded = torch.cat([tensor, tensor.new_zeros(shape)], dim=dim).contiguous()
        gathered = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(gathered, padded, group=self.group)
        return [g.narrow(dim, 0, size) for g, size in zip(gathered, sizes, strict=True)]

    @property
    def can_broadcast(self) -> bool:
        return True

    def broadcast_async(self, tensor: torch.Tensor, src: int):
        source = dist.get_global_rank(self.group, src) if self.group is not None else src
        return dist.broadcast(tensor, src=source, group=self.group, async_op=True)

    def all_true(self, flag: bool) -> bool:
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN, group=self.group)
        return bool(t.item())

    def barrier(self) -> None:
        # A tiny all_reduce rather than dist.barrier(): it honours the group's timeout on every backend.
        t = torch.zeros(1, device=self.device)
        dist.all_reduce(t, group=self.group)
