"""The decode step under a CUDA graph (gpt-fast's lesson: the speed trick in one visible place).

One decode step is ~30 layers of a dozen small kernels each; launched from Python it costs far
more than the ~10 ms of memory traffic it needs at 128K. Here the whole step (every layer, the
tail write, the context and tail attention, the cross-rank gather of ``(O, LSE)``) is captured
once and replayed per token. Everything that changes between tokens lives in device tensors the
graph advances itself: the input token, its position, the tail slot and the tail length. Sampling
stays with ``engine.generate`` (one argmax and the host's broadcast per token).

Any failure to capture falls back to the eager step, with the reason kept in ``fallback_reason``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from engine.cache import StarCache
from engine.modelcall import call_model


class GraphDecodeStep:
    """``step(token) -> logits`` for the tokens after the query, replaying one captured graph."""

    def __init__(self, model: torch.nn.Module, cache: StarCache, position: int, device: torch.device):
        self.model, self.cache = model, cache
        self.token = torch.zeros((1, 1), dtype=torch.long, device=device)
        self.position = torch.full((1, 1), position, dtype=torch.long, device=device)
        cache.graph_slot = torch.full((1,), cache.tail_len, dtype=torch.long, device=device)
        cache.graph_kv_len = torch.full((1,), cache.tail_len + 1, dtype=torch.int32, device=device)
        self.graph = torch.cuda.CUDAGraph()
        saved = self._state()
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(2):  # compile kernels, pick cuBLAS plans, open NCCL channels
                self._body()
                self._restore(saved)
        torch.cuda.current_stream(device).wait_stream(stream)
        with torch.cuda.graph(self.graph):
            self.logits = self._body()
        self._restore(saved)

    def _body(self) -> torch.Tensor:
        out = call_model(self.model, self.token, self.position, self.cache, star_cache=self.cache)
        self.position += 1
        self.cache.graph_slot += 1
        self.cache.graph_kv_len += 1
        return out.logits[:, -1]

    def _state(self) -> list[torch.Tensor]:
        return [t.clone() for t in (self.position, self.cache.graph_slot, self.cache.graph_kv_len)]

    def _restore(self, saved: list[torch.Tensor]) -> None:
        for dst, src in zip(
            (self.position, self.cache.graph_slot, self.cache.graph_kv_len), saved, strict=True
        ):
            dst.copy_(src)

    def __call__(self, token: int) -> torch.Tensor:
        self.token.fill_(token)
        self.graph.replay()
        if self.cache.comm.is_host:
            self.cache.tail_len += 1  # the host mirror of graph_slot, for get_seq_length()
        return self.logits

    def close(self) -> None:
        """Leave graph mode so that the cache serves an ordinary forward pass again."""
        self.cache.graph_slot = self.cache.graph_kv_len = None
        self.graph.reset()


class DecodeStep:
    """The step ``engine.generate`` calls: captures the graph on the first call (so capture time
    never delays the first token) and replays it after; falls back to ``eager`` if capture fails."""

    def __init__(
        self, model, cache: StarCache, position: int, device: torch.device, eager: Callable, enabled: bool
    ):
        self.model, self.cache, self.position, self.device, self.eager = model, cache, position, device, eager
        self.graph: GraphDecodeStep | None = None
        self.capture_s = 0.0
        usable = enabled and device.type == "cuda"
        self.fallback_reason: str | None = None if usable else "disabled"
        if usable and cache.eager_only:  # windows, soft-capping, sinks: engine.variant_attention
            self.fallback_reason = "attention variant (window, soft-capping or sinks) runs eagerly"

    def __call__(self, token: int) -> torch.Tensor:
        if self.graph is None and self.fallback_reason is None:
            started = time.perf_counter()
            try:
                self.graph = GraphDecodeStep(self.model, self.cache, self.position, self.device)
            except Exception as exc:  # noqa: BLE001 - any capture failure leaves the eager path working
                self.cache.graph_slot = self.cache.graph_kv_len = None
                self.fallback_reason = f"{type(exc).__name__}: {exc}"[:300]
            self.capture_s = time.perf_counter() - started
        return self.graph(token) if self.graph is not None else self.eager(token)

    def close(self) -> None:
        if self.graph is not None:
            self.graph.close()
            self.graph = None
