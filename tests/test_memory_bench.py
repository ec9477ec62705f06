"""bench/memory_gpu.py on CPU at a tiny shape (the flow and its JSON; memory figures need a GPU),
and its reading of an allocator history on a hand-made one."""

from __future__ import annotations

import json

import transformers

from bench.memory_gpu import TINY_SHAPE, live_at_peak, main
from bench.speed import LLAMA_8B
from engine.memory import parameter_count


def frame(name: str) -> list[dict]:
    return [{"filename": f"/repo/engine/{name}.py", "line": 7, "name": name}]


def test_the_allocations_alive_at_the_peak_are_named_by_where_they_were_made():
    events = [
        {"action": "alloc", "addr": 1, "size": 100, "frames": frame("cache")},
        {"action": "alloc", "addr": 2, "size": 50, "frames": frame("mlp")},
        {"action": "free_requested", "addr": 2, "size": 50},
        {"action": "free_completed", "addr": 2, "size": 50},
        {"action": "alloc", "addr": 3, "size": 70, "frames": frame("mlp")},
        {"action": "alloc", "addr": 4, "size": 30, "frames": frame("mlp")},  # the peak: 200
        {"action": "free_completed", "addr": 3, "size": 70},
        {"action": "alloc", "addr": 5, "size": 60, "frames": frame("attention")},  # 190
    ]
    found = live_at_peak(events)
    assert found["peak_bytes_in_trace"] == 200
    assert [a["bytes"] for a in found["largest"]] == [100, 70, 30]
    assert found["by_site"] == {"engine/cache.py:7 cache": 100, "engine/mlp.py:7 mlp": 100}


def test_the_script_runs_on_cpu_at_a_tiny_shape(tmp_path):
    out = tmp_path / "memory.json"
    assert main(["--tiny", "--only", "star-128K-16K", "global-256K", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [run["run"] for run in report["runs"]] == ["star-128K-16K", "global-256K"]
    for run in report["runs"]:
        assert run["generated"] == 4 and "error" not in run and "skipped" not in run
        estimate = run["estimate"]
        assert estimate["peak"] == estimate["weights"] + estimate["kv_cache"] + estimate["work"]
    config = transformers.LlamaConfig(**{**LLAMA_8B, **TINY_SHAPE})
    assert report["weights_estimated"] == 4 * parameter_count(config)  # float32 on CPU
    assert len(report["refusals"]) == 2 and all(r["estimated_peak"] > 0 for r in report["refusals"])
