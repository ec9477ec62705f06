"""Programmatic dependent launch (PDL) for the decode step's Triton kernels, Hopper and later.

A decode step is a chain of ~400 short kernels; between two of them the GPU drains one grid and
ramps up the next, about a microsecond each, and every weight product starts its stream of weights
only once its input exists. Launched with PDL, a kernel's programs may start while the kernel
before it finishes: each kernel first lets the next one launch (``gdc_launch_dependents``), reads
what needs nothing from the kernel before it (a product's weights), then waits for that kernel's
writes (``gdc_wait``) before it reads their results or writes anything. Every kernel launched this
way waits before it ends, so a kernel's wait also covers every kernel before the one it follows.

Both instructions are no-ops without the launch attribute, so a kernel compiled with PDL runs
anywhere the launch does not set it. Under Triton's interpreter (CPU) the flag is off.
"""

from __future__ import annotations

import functools
import os

import torch

# The switch, decided here once (bench/decode_ablation.py turns it off to measure its worth).
PDL_CONFIG = {"on": True}
# Triton reads TRITON_INTERPRET when it is imported, so the value cannot change afterwards: read
# once, not at every launch.
_INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


@functools.cache
def _capable(index: int) -> bool:
    return torch.cuda.get_device_capability(index)[0] >= 9


def pdl(t: torch.Tensor) -> bool:
    """Whether launches over ``t``'s device use PDL: a CUDA device of compute capability 9 or more,
    the switch on, and not Triton's interpreter."""
    if not (PDL_CONFIG["on"] and t.is_cuda) or _INTERPRETED:
        return False
    return _capable(t.device.index if t.device.index is not None else torch.cuda.current_device())


def launch_options(on: bool) -> dict:
    """The launch keyword that sets the attribute (none when off: the interpreter rejects it)."""
    return {"launch_pdl": True} if on else {}
