"""The KV cache of one rank: its own context blocks, the anchor while phase 1 runs, and (on the
query host) the query and generated tokens. A transformers ``Cache`` so the model's own code
drives it; the star attention function reads it back by layer index."""

from __future__ import annotations

from typing import Literal

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from engine.comm import Comm
from kernels import dequantize, quantize_fp8
from kernels.quant import FP8, empty_keys_major


def _write_slot(dst_k, dst_v, slot, k, v) -> bool:
    """The decode token's K and V into the tail at a device index in one launch (CUDA with Triton;
    False where ``kernels.fused.write_slot`` does not serve the shapes, for the caller to copy)."""
    if not k.is_cuda:
        return False
    from kernels.fused import write_slot

    return write_slot(dst_k, dst_v, slot, k, v)


def allocate_context(
    layer: StarLayer,
    k_shape: tuple[int, ...],
    v_shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
    fp8: bool,
) -> None:
    """A layer's context buffers, [B, Hkv, tokens, D] each. Under fp8 (``kernels.quant``) the
    values are e4m3 with a float32 scale per token, and V is stored keys-contiguous (a transposed
    view, its rows padded to 16 bytes): the decode kernel's P·V product reads its 8-bit V operand
    along the keys, which a D-contiguous V let it do only byte by byte (docs/benchmarks.md)."""
    if not fp8:
        layer.context_k = torch.empty(k_shape, dtype=dtype, device=device)
        layer.context_v = torch.empty(v_shape, dtype=dtype, device=device)
    else:
        layer.context_k = torch.empty(k_shape, dtype=FP8, device=device)
        layer.context_v = empty_keys_major(v_shape, device)
        layer.context_ks = torch.empty(k_shape[:3], dtype=torch.float32, device=device)
        layer.context_vs = torch.empty(v_shape[:3], dtype=torch.float32, device=device)
    layer.is_initialized = True


Phase = Literal["anchor", "block", "query", "ring", "delta"]


class StarLayer(CacheLayerMixin):
    """One layer's KV. Context and tail live in buffers allocated once (no re-concatenation)."""

    def __init__(self) -> None:
        super().__init__()
        self.context_k: torch.Tensor | None = None
        self.context_v: torch.Tensor | None = None
        self.anchor_k: torch.Tensor | None = None
        self.anchor_v: torch.Tensor | None = None
        self.tail_k: torch.Tensor | None = None
        self.tail_v: torch.Tensor | None = None
        # fp8 context (kernels.quant): context_k/v hold e4m3 values, these their per-token scales
        self.context_ks: torch.Tensor | None = None
        self.context_vs: torch.Tensor | None = None
        self.kept_anchor: tuple[torch.Tensor, torch.Tensor] | None = None  # fp8: block 0's anchor

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):  # driven by StarCache.update
        raise NotImplementedError

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return query_length, 0

    def get_seq_length(self) -> int:
        return 0 if self.context_k is None else self.context_k.shape[2]

    def get_max_length(self) -> int:
        return -1


class AnchorShare:
    """Phase 1 without recomputing the anchor on every rank. Block 0's first ``anchor`` tokens'
    KV *is* the anchor's (a causal prefix), so rank 0 sends it layer by layer while it encodes
    block 0, and every other rank receives it into buffers it posts before its first block: its
    layer ``l`` waits only for rank 0's layer ``l``. Each rank then uses rank 0's anchor, exactly
    what one rank alone would use."""

    def __init__(self, comm: Comm, num_layers: int, anchor: int, sending: bool, kv_shape=None, **tensor_kw):
        self.comm, self.anchor, self.sending = comm, anchor, sending
        self.kv_shape = tuple(kv_shape) if kv_shape is not None else None
        self.works: list = [None] * num_layers
        self.buffers: list[torch.Tensor | None] = [None] * num_layers
        if not sending:  # (B, Hkv, anchor, D) for keys and values, packed in one buffer a layer
            for layer in range(num_layers):
                self.buffers[layer] = torch.empty((2, *kv_shape), **tensor_kw)
                self.works[layer] = comm.broadcast_async(self.buffers[layer], 0)

    def send(self, layer_idx: int, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        packed = torch.stack([key_states[:, :, : self.anchor], value_states[:, :, : self.anchor]])
        if tuple(packed.shape[1:]) != self.kv_shape:  # the receivers sized their buffers from the config
            raise RuntimeError(f"anchor KV of shape {tuple(packed.shape[1:])}, expected {self.kv_shape}")
        self.buffers[layer_idx] = packed  # kept alive until finish()
        self.works[layer_idx] = self.comm.broadcast_async(packed, 0)

    def kv(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The received anchor KV of one layer, once it has arrived (a stream wait on CUDA)."""
        work = self.works[layer_idx]
        if work is not None:
            work.wait()
            self.works[layer_idx] = None
        buf = self.buffers[layer_idx]
        return buf[0], buf[1]

    def finish(self) -> None:
        for work in self.works:
            if work is not None:
                work.wait()
        self.works = [None] * len(self.works)
        self.buffers = [None] * len(self.buffers)


class StarCache(Cache):
    """Per-rank KV for Star Attention.

    ``phase`` says what the next forward pass is: ``anchor`` (keep its KV as the anchor),
    ``block`` (write its KV into the context buffer at ``block_offset``) or ``query`` (append
    to the tail on the query host only). The engine sets the phase; the model calls ``update``.
    """

    def __init__(
        self,
        num_layers: int,
        comm: Comm,
        local_context: int,
        context_tokens: int,
        tail_room: int = 0,
        kv_fp8: bool = False,
    ):
        super().__init__(layers=[StarLayer() for _ in range(num_layers)])
        self.comm = comm
        self.local_context = local_context  # tokens this rank holds
        self.context_tokens = context_tokens  # tokens of the whole context (all ranks)
        # The context KV in fp8 (kernels.quant), written as phase 1 produces it; the query and
        # answer's KV (the tail) stays in the model's dtype, in buffers of its own.
        self.kv_fp8 = kv_fp8
        # The query host keeps room for the query and answer right after its context, so that a
        # decode step attends to both with one call (``joined_kv``): two calls and a merge per
        # layer cost a CPU decode step ~10%, far more on a busy machine (docs/cpu-speed.md).
        self.tail_room = tail_room if comm.is_host and not kv_fp8 else 0
        # Rank 0 under fp8: block 0's first ``keep_anchor`` tokens' KV is kept in the model's dtype
        # as the anchor (the fp8 copy in the context buffer would change phase 1 for every block).
        self.keep_anchor = 0
        self.joined = False  # this query's tail lives in that room
        self.phase: Phase = "block"
        self.block_offset = 0
        self.context_len = 0  # filled so far, in local tokens
        self.tail_len = 0
        self.tail_capacity = 0
        # Set while a CUDA graph replays the decode step (engine.graphs): the tail slot the next
        # token writes and the tail length after it, as device tensors the graph advances itself.
        self.graph_slot: torch.Tensor | None = None
        self.graph_kv_len: torch.Tensor | None = None
        # The layer whose decode K/V the model's Q/K/V launch has already written at graph_slot
        # (engine.fused), so that update() skips its own write; set and cleared around that layer.
        self.written_slot: int | None = None
        self.ring_layout = None  # engine.plan.ZigzagLayout while ring mode encodes the context
        # Phase 1 with a shared anchor: rank 0 sends while it encodes block 0, the others receive.
        self.anchor_send: AnchorShare | None = None
        self.anchor_recv: AnchorShare | None = None
        # Where this rank's context sits among all the context tokens, as global (start, stop)
        # spans in the order its buffer holds them (the modes set it; sliding windows need it),
        # and how many query/answer tokens came before the current forward pass (every rank).
        self.context_spans: tuple[tuple[int, int], ...] = ((0, local_context),)
        self.query_offset = 0
        self._query_seen = 0
        self.eager_only = False  # a layer uses an attention variant: no CUDA-graph decode step
        # Phase 1 under the delta correction (kernels.delta): every this-many-th block row exact
        # over all earlier context; 0 is plain Star. One rank encodes block by block (earlier_kv),
        # several ranks layer-synchronously (engine.delta_ranks).
        self.delta_stride = 0
        self.delta_blocks = None  # engine.delta_ranks.DeltaBlocks while phase is "delta" (several ranks)

    # --- driven by the engine -------------------------------------------------------------
    def output_unused(self, layer_idx: int) -> bool:
        """Whether layer ``layer_idx``'s attention output feeds nothing kept: the last layer in
        phase 1, where only K and V are kept and the block's logits are discarded
        (``engine.last_layer``). Not under the delta correction's layer-synchronous phase, whose
        every layer takes part in an exchange between ranks."""
        return self.phase in ("anchor", "block") and layer_idx == len(self.layers) - 1

    def start_block(self, offset: int) -> None:
        self.phase, self.block_offset = "block", offset

    def use_anchor_from_context(self, anchor: int) -> None:
        """Block 0 is on this rank: its first ``anchor`` tokens' KV *is* the anchor's (causal prefix).
        Under fp8 it was kept at full precision while block 0 was written (``keep_anchor``)."""
        if self.kv_fp8:
            for layer in self.layers:
                (layer.anchor_k, layer.anchor_v), layer.kept_anchor = layer.kept_anchor, None
            return
        for layer in self.layers:
            layer.anchor_k = layer.context_k[:, :, :anchor]
            layer.anchor_v = layer.context_v[:, :, :anchor]

    def anchor_kv(self, layer_idx: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The anchor's KV for a block's attention: received from rank 0, or this rank's own."""
        if self.anchor_recv is not None:
            return self.anchor_recv.kv(layer_idx)
        layer = self.layers[layer_idx]
        return layer.anchor_k, layer.anchor_v

    def earlier_kv(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The KV of every context token before the block being encoded, at this layer (the delta
        correction), or None where there is none; fp8 values under fp8 (``earlier_scales``).
        Blocks are encoded in order through every layer, so at block ``i`` the buffer already
        holds blocks ``0..i-1`` at every layer."""
        layer = self.layers[layer_idx]
        if layer.context_k is None or self.block_offset == 0:
            return None
        return layer.context_k[:, :, : self.block_offset], layer.context_v[:, :, : self.block_offset]

    def earlier_scales(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The per-token scales of ``earlier_kv`` under fp8, else None."""
        layer = self.layers[layer_idx]
        if layer.context_ks is None:
            return None
        return layer.context_ks[:, :, : self.block_offset], layer.context_vs[:, :, : self.block_offset]

    def drop_anchor(self) -> None:
        for share in (self.anchor_send, self.anchor_recv):
            if share is not None:
                share.finish()
        self.anchor_send = self.anchor_recv = None
        for layer in self.layers:
            layer.anchor_k = layer.anchor_v = None

    def start_query(self, capacity: int) -> None:
        """Forget any earlier query's tail; room for ``capacity`` query + generated tokens: after the
        context where phase 1 left enough (``tail_room``), else in buffers of their own."""
        self.phase = "query"
        self.tail_len = 0
        self.query_offset = self._query_seen = 0
        self.tail_capacity = capacity
        self.graph_slot = self.graph_kv_len = None
        start, stop = self.local_context, self.local_context + capacity
        self.joined = self.context_len == start and all(
            layer.context_k is not None and layer.context_k.shape[2] >= stop for layer in self.layers
        )
        for layer in self.layers:
            if self.joined:
                layer.tail_k, layer.tail_v = (
                    layer.context_k[:, :, start:stop],
                    layer.context_v[:, :, start:stop],
                )
            else:
                layer.tail_k = layer.tail_v = None

    def continue_query(self, capacity: int, seen: int) -> None:
        """A follow-up in a conversation: keep the tail of the earlier turns (``seen`` tokens after
        the context, counted on every rank) and make room for ``capacity`` more on the host, in
        buffers of their own once the room phase 1 left is used up."""
        self.phase = "query"
        self.query_offset = self._query_seen = seen
        self.graph_slot = self.graph_kv_len = None
        need = self.tail_len + capacity
        self.tail_capacity = max(self.tail_capacity, need)
        if not self.comm.is_host:
            return
        for layer in self.layers:
            if layer.tail_k is None or layer.tail_k.shape[2] >= need:
                continue
            size = max(need, 2 * layer.tail_k.shape[2])
            for name in ("tail_k", "tail_v"):
                old = getattr(layer, name)
                grown = old.new_empty((*old.shape[:2], size, old.shape[3]))
                grown[:, :, : self.tail_len] = old[:, :, : self.tail_len]
                setattr(layer, name, grown)
            self.joined = False

    # --- driven by the model --------------------------------------------------------------
    @torch.compiler.disable  # python-int offsets would make a compiled caller recompile per block
    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        layer = self.layers[layer_idx]
        length = key_states.shape[2]
        if self.phase == "anchor":
            layer.anchor_k, layer.anchor_v = key_states, value_states
            return key_states, value_states
        if self.phase in ("block", "ring", "delta"):  # ring and delta: all this rank's tokens at once
            if layer.context_k is None:
                self._allocate_context(layer, key_states, value_states)
            end = self.block_offset + length
            if self.kv_fp8:
                if self.keep_anchor and self.block_offset == 0:  # taken up after block 0
                    layer.kept_anchor = (
                        key_states[:, :, : self.keep_anchor].clone(),
                        value_states[:, :, : self.keep_anchor].clone(),
                    )
                for values, scales, states in (
                    (layer.context_k, layer.context_ks, key_states),
                    (layer.context_v, layer.context_vs, value_states),
                ):
                    q, scale = quantize_fp8(states)
                    values[:, :, self.block_offset : end] = q
                    scales[:, :, self.block_offset : end] = scale
            else:
                layer.context_k[:, :, self.block_offset : end] = key_states
                layer.context_v[:, :, self.block_offset : end] = value_states
            if self.anchor_send is not None:  # rank 0 encoding block 0: send this layer's anchor
                self.anchor_send.send(layer_idx, key_states, value_states)
            if layer_idx == len(self.layers) - 1:
                self.context_len = max(self.context_len, end)
            return key_states, value_states
        # query phase: only the host keeps the tail; the other ranks return the new KV unchanged
        if layer_idx == 0 and self.graph_slot is None:  # every rank counts the query tokens
            self.query_offset = self._query_seen
            self._query_seen += length
        if not self.comm.is_host:
            return key_states, value_states
        if self.graph_slot is not None:  # graph replay: write at a device index, return the buffer
            if self.written_slot == layer_idx:  # the Q/K/V launch wrote it (engine.fused._plan_rope)
                return layer.tail_k, layer.tail_v
            if not _write_slot(layer.tail_k, layer.tail_v, self.graph_slot, key_states, value_states):
                layer.tail_k.index_copy_(2, self.graph_slot, key_states)
                layer.tail_v.index_copy_(2, self.graph_slot, value_states)
            return layer.tail_k, layer.tail_v
        if layer.tail_k is None:
            cap = max(self.tail_capacity, length)
            layer.tail_k = key_states.new_empty((*key_states.shape[:2], cap, key_states.shape[3]))
            layer.tail_v = value_states.new_empty((*value_states.shape[:2], cap, value_states.shape[3]))
        start = self.tail_len
        if start + length > layer.tail_k.shape[2]:
            raise RuntimeError("query tail overflow: more tokens than the planned capacity")
        layer.tail_k[:, :, start : start + length] = key_states
        layer.tail_v[:, :, start : start + length] = value_states
        if layer_idx == len(self.layers) - 1:
            self.tail_len += length
        return layer.tail_k[:, :, : start + length], layer.tail_v[:, :, : start + length]

    def _allocate_context(
        self, layer: StarLayer, key_states: torch.Tensor, value_states: torch.Tensor
    ) -> None:
        size = self.local_context + self.tail_room
        shape = (*key_states.shape[:2], size, key_states.shape[3])
        vshape = (*value_states.shape[:2], size, value_states.shape[3])
        allocate_context(layer, shape, vshape, key_states.dtype, key_states.device, self.kv_fp8)

    def context_kv(self, layer_idx: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """This rank's context KV as stored: the model's dtype, or fp8 values (``context_scales``)."""
        layer = self.layers[layer_idx]
        if layer.context_k is None:
            return None, None
        return layer.context_k[:, :, : self.context_len], layer.context_v[:, :, : self.context_len]

    def context_scales(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The fp8 context's per-token scales of K and V, or None where the KV is not fp8."""
        layer = self.layers[layer_idx]
        if layer.context_ks is None:
            return None
        return layer.context_ks[:, :, : self.context_len], layer.context_vs[:, :, : self.context_len]

    def context_kv_dequantized(
        self, layer_idx: int, dtype: torch.dtype
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The context KV in ``dtype`` (a widened copy under fp8): for paths without an fp8 kernel."""
        k, v = self.context_kv(layer_idx)
        scales = self.context_scales(layer_idx)
        if k is None or scales is None:
            return k, v
        return dequantize(k, scales[0], dtype), dequantize(v, scales[1], dtype)

    def local_offsets(self) -> list[int]:
        """Where each of ``context_spans`` starts in this rank's context buffer."""
        offsets, at = [], 0
        for start, stop in self.context_spans:
            offsets.append(at)
            at += stop - start
        return offsets

    def joined_kv(self, layer_idx: int, tail_tokens: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The host's context and its first ``tail_tokens`` tail tokens as one view, where the tail
        lives right after the context (``start_query``); else None."""
        if not self.joined:
            return None
        layer, stop = self.layers[layer_idx], self.local_context + tail_tokens
        return layer.context_k[:, :, :stop], layer.context_v[:, :, :stop]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.context_tokens + self.tail_len
