"""Triton's interpreter over the kernels and ``engine.fused``'s wrappers on CPU tensors: run by
tests/test_kernels_interpreter.py in a process of its own with ``TRITON_INTERPRET=1`` (read when
triton is imported). Prints one JSON object, check name -> the measured numbers; the tests assert
on them, so a failure names the kernel. A check that raises is reported as ``<group>/crashed``
without hiding the others."""

from __future__ import annotations

import json
import os
import sys

import torch


def main() -> None:
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("run with TRITON_INTERPRET=1 (tests/test_kernels_interpreter.py does)")
    # The launch shape asks the device for its SM count when no split count is given.
    torch.cuda.get_device_properties = lambda device=None: type("Props", (), {"multi_processor_count": 4})()
    from tests.interpreter_kernels import KERNEL_CHECKS
    from tests.interpreter_wrappers import check_layer_tokens, check_wrappers

    results = {}
    checks = {**KERNEL_CHECKS, "wrappers": check_wrappers, "layer_tokens": check_layer_tokens}
    for group, check in checks.items():
        try:
            results.update(check())
        except Exception as exc:  # one kernel's failure must not hide the others' results
            results[f"{group}/crashed"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(results))


if __name__ == "__main__":
    main()
