"""Saved contexts (issue 14): phase 1's KV written by each rank and loaded back by a later run.

A hit must give exactly the tokens a fresh run gives, and those of transformers' own dense model
(global mode: its greedy tokens; star mode: the per-block reference of tests/helpers.py); a changed
context, a damaged file or another entry's file must never be trusted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from engine import Engine, Request, Stats, Token
from engine import context_store as store
from engine.context_store import StoreSpec
from tests.helpers import (
    IdTokenizer,
    dense_greedy,
    reference_context_cache,
    reference_greedy,
    settings_of,
    spawned_ranks,
)

CTX = torch.randint(0, 101, (70,), generator=torch.Generator().manual_seed(5)).tolist()
Q1, Q2 = [3, 14, 15], [92, 65, 35, 89]
STEPS = 8


def ask(engine, spec, query, ctx=CTX, mode="star", **kwargs):
    """(answer tokens, Stats) of one run."""
    events = list(engine.run(Request(ctx, [query], settings_of(mode, STEPS, **kwargs), saved=spec)))
    tokens = [e.token_id for e in events if isinstance(e, Token) and e.token_id >= 0]
    return tokens, next(e for e in events if isinstance(e, Stats))


@pytest.fixture
def spec(tmp_path) -> StoreSpec:
    return StoreSpec(str(tmp_path / "contexts"), 1 << 30, "tiny-llama-test")


def test_global_mode_hit_gives_the_dense_models_greedy_tokens(tiny_llama, spec):
    engine = Engine(tiny_llama, IdTokenizer())
    _, first = ask(engine, spec, Q1, mode="global")
    tokens, second = ask(engine, spec, Q2, mode="global")
    assert (first.context_cache, second.context_cache) == ("miss", "hit")
    assert tokens == dense_greedy(tiny_llama, CTX + Q2, STEPS)


def test_star_hit_equals_a_fresh_run_and_the_per_block_reference(tiny_llama, spec):
    engine = Engine(tiny_llama, IdTokenizer())
    _, first = ask(engine, spec, Q1, block_size=16, anchor_size=8)
    hit, second = ask(engine, spec, Q2, block_size=16, anchor_size=8)
    fresh, off = ask(engine, None, Q2, block_size=16, anchor_size=8)
    assert (first.context_cache, second.context_cache, off.context_cache) == ("miss", "hit", "off")
    reference = reference_greedy(tiny_llama, reference_context_cache(tiny_llama, CTX, 16, 8), 70, Q2, STEPS)
    assert hit == fresh == reference
    entries = store.list_entries(Path(spec.directory))
    assert len(entries) == 1 and entries[0].info["tokens"] == len(CTX)
    assert first.context_save_s > 0 and second.context_save_s == 0


def test_a_changed_context_is_never_answered_from_the_old_encoding(tiny_llama, spec):
    engine = Engine(tiny_llama, IdTokenizer())
    ask(engine, spec, Q1, block_size=16)
    changed = CTX[:40] + [(CTX[40] + 1) % 101] + CTX[41:]
    tokens, stats = ask(engine, spec, Q1, ctx=changed, block_size=16)
    assert stats.context_cache == "miss"
    assert tokens == ask(engine, None, Q1, ctx=changed, block_size=16)[0]
    assert len(store.list_entries(Path(spec.directory))) == 2
    _, other_plan = ask(engine, spec, Q1, block_size=32)  # another plan of the same context
    assert other_plan.context_cache == "miss"


def _only_file(spec) -> Path:
    (path,) = Path(spec.directory).glob("*/rank-*.safetensors")
    return path


@pytest.mark.parametrize("damage", ["flip", "truncate", "foreign", "garbage"])
def test_a_damaged_or_foreign_file_is_removed_and_rewritten(tiny_llama, spec, damage):
    engine = Engine(tiny_llama, IdTokenizer())
    expected, _ = ask(engine, spec, Q1, block_size=16)
    path = _only_file(spec)
    data = bytearray(path.read_bytes())
    if damage == "flip":  # one bit deep in the tensor data: only the checksum sees it
        data[len(data) - 1000] ^= 1
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "garbage":
        path.write_bytes(b"not a safetensors file")
    else:  # a good file of another entry, put under this entry's name
        other = CTX[:-1] + [(CTX[-1] + 1) % 101]
        ask(engine, spec, Q1, ctx=other, block_size=16)
        foreign = next(p for p in Path(spec.directory).glob("*/rank-*.safetensors") if p != path)
        path.write_bytes(foreign.read_bytes())
    tokens, stats = ask(engine, spec, Q1, block_size=16)
    assert stats.context_cache == "miss" and tokens == expected
    assert ask(engine, spec, Q1, block_size=16)[1].context_cache == "hit"  # rewritten, good again


def test_least_recently_used_entries_go_first_and_oversized_ones_are_not_kept(tiny_llama, tmp_path):
    engine = Engine(tiny_llama, IdTokenizer())
    probe = StoreSpec(str(tmp_path / "probe"), 1 << 30, "tiny")
    ask(engine, probe, Q1, block_size=16)
    one = store.list_entries(Path(probe.directory))[0].bytes
    spec = StoreSpec(str(tmp_path / "contexts"), int(2.5 * one), "tiny")
    contexts = [CTX[:-1] + [i] for i in range(3)]
    for ctx in contexts[:2]:
        ask(engine, spec, Q1, ctx=ctx, block_size=16)
        time.sleep(0.02)  # distinct last-use times
    assert ask(engine, spec, Q2, ctx=contexts[0], block_size=16)[1].context_cache == "hit"  # used again
    ask(engine, spec, Q1, ctx=contexts[2], block_size=16)  # a third entry: the store holds two
    assert ask(engine, spec, Q1, ctx=contexts[0], block_size=16)[1].context_cache == "hit"
    assert ask(engine, spec, Q1, ctx=contexts[1], block_size=16)[1].context_cache == "miss"  # evicted
    tiny = StoreSpec(str(tmp_path / "tiny"), one // 2, "tiny")
    ask(engine, tiny, Q1, block_size=16)
    assert store.list_entries(Path(tiny.directory)) == []
    assert ask(engine, tiny, Q1, block_size=16)[1].context_cache == "miss"


def test_clear_removes_every_entry_and_stale_temporary_files_are_swept(tiny_llama, spec):
    engine = Engine(tiny_llama, IdTokenizer())
    ask(engine, spec, Q1, block_size=16)
    directory = Path(spec.directory)
    (entry,) = store.list_entries(directory)
    stale = entry.path / ".rank-0-of-1.safetensors.999.tmp"
    stale.write_bytes(b"half a file")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    store.evict(directory, spec.max_bytes)
    assert not stale.exists() and len(store.list_entries(directory)) == 1
    assert store.clear(directory) == (1, entry.bytes)
    assert store.list_entries(directory) == []


def test_sizes_parse_and_print():
    assert store.parse_size("4GiB") == 4 << 30
    assert store.parse_size("500M") == 500 << 20
    assert store.parse_size("1.5k") == 1536 and store.parse_size("0") == 0
    with pytest.raises(ValueError):
        store.parse_size("lots")
    assert store.format_size(3 << 20) == "3.0 MiB"


def test_the_weights_fingerprint_changes_when_a_weights_file_does(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"a" * 4096)
    first = store.model_fingerprint("m", str(tmp_path))
    assert first == store.model_fingerprint("m", str(tmp_path)) and first is not None
    weights.write_bytes(b"b" * 4096)
    assert store.model_fingerprint("m", str(tmp_path)) != first
    assert store.model_fingerprint("m", str(tmp_path / "missing")) is None


def _two_ranks(rank, procs, init_file, out_path):
    """Each rank, in star and in ring mode: a miss with Q1 (every rank saves its blocks), a hit
    with Q2, a run without the store with Q2; the answers' tokens are saved for the test."""
    import torch.distributed as dist
    from transformers import LlamaForCausalLM

    from engine.comm import DistComm
    from tests.helpers import tiny_config

    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_config("llama")).eval()
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=procs)
    try:
        engine = Engine(model, IdTokenizer(), comm=DistComm(torch.device("cpu")))
        spec = StoreSpec(os.path.join(os.path.dirname(out_path), "contexts"), 1 << 30, "tiny")
        results = {}
        runs = [
            (f"{mode}-{name}", mode, query, saved)
            for mode in ("star", "ring")
            for name, query, saved in (("miss", Q1, spec), ("hit", Q2, spec), ("fresh", Q2, None))
        ]
        for name, mode, query, saved in runs:
            kwargs = {"block_size": 16} if mode == "star" else {}
            request = Request(CTX, [query], settings_of(mode, STEPS, **kwargs), saved=saved)
            events = list(engine.run(request))
            tokens = [e.token_id for e in events if isinstance(e, Token) and e.token_id >= 0]
            status = [e.context_cache for e in events if isinstance(e, Stats)]
            results[name] = (tokens, status)
        results["files"] = sorted(p.name for p in Path(spec.directory).glob("*/*"))
        torch.save(results, f"{out_path}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_save_their_own_blocks_and_a_hit_gives_the_fresh_tokens(tiny_llama):
    """Star: the per-block reference's tokens; ring (exact causal attention): dense greedy's."""
    with spawned_ranks(_two_ranks, 2) as out:
        host = torch.load(f"{out}.1")
    reference = reference_greedy(tiny_llama, reference_context_cache(tiny_llama, CTX, 16, 16), 70, Q2, STEPS)
    for mode in ("star", "ring"):
        statuses = [host[f"{mode}-{name}"][1] for name in ("miss", "hit", "fresh")]
        assert statuses == [["miss"], ["hit"], ["off"]]
    assert host["star-hit"][0] == host["star-fresh"][0] == reference
    assert host["ring-hit"][0] == host["ring-fresh"][0] == dense_greedy(tiny_llama, CTX + Q2, STEPS)
    rank_files = ["rank-0-of-2.safetensors", "rank-1-of-2.safetensors"]
    assert host["files"] == ["entry.json"] * 2 + sorted(rank_files * 2)  # one entry per mode


def test_a_context_is_saved_only_where_writing_and_loading_it_once_beats_encoding_it():
    from engine.saved_context import LOAD_BYTES_PER_S, SAVE_BYTES_PER_S, worth_saving

    def one_second(device: str) -> int:  # the bytes written and loaded once in one second
        load, write = LOAD_BYTES_PER_S[device], SAVE_BYTES_PER_S[device]
        return int(load * write / (load + write))

    for device in ("cuda", "cpu"):
        entry = one_second(device)
        assert worth_saving(entry, 1.1, device)
        assert not worth_saving(entry, 0.9, device)
        # loading alone would beat encoding again, but the write, paid before the answer, is
        # not won back by the first hit
        assert 2 * entry / LOAD_BYTES_PER_S[device] < 1.5 and not worth_saving(2 * entry, 1.5, device)
    entry = one_second("cpu")
    for encode_s in (0.9, 1.1):  # an unmeasured device is taken at the CPU's rates
        assert worth_saving(entry, encode_s, "npu") == worth_saving(entry, encode_s, "cpu") == (encode_s > 1)


def test_the_measured_contexts_are_saved_where_their_figures_say():
    """The entries and phase-1 times of docs/saved-context-cpu.json, docs/saved-context-gpu.json
    (phase 1 first in its process, then warm) and docs/startup-gpu.json (a fresh CLI run)."""
    from engine.saved_context import worth_saving

    assert worth_saving(290_448_771, 74.38, "cpu")  # 6.3K tokens on the 2-core VM: by far
    h200 = {753_529_776: (1.226, 0.225), 3_019_076_184: (1.760, 1.516, 2.807)}  # 32K, 128K, bf16
    assert not any(worth_saving(entry, s, "cuda") for entry, times in h200.items() for s in times)


def test_a_context_that_would_load_slower_than_it_encodes_stays_in_memory(tiny_llama, spec, monkeypatch):
    from engine import saved_context

    engine = Engine(tiny_llama, IdTokenizer())
    monkeypatch.setitem(saved_context.LOAD_BYTES_PER_S, "cpu", 1.0)  # a byte a second: never worth it
    expected, first = ask(engine, spec, Q1, block_size=16)
    tokens, second = ask(engine, spec, Q1, block_size=16)
    assert (first.context_cache, second.context_cache) == ("miss", "miss")
    assert tokens == expected
    assert store.list_entries(Path(spec.directory)) == []
