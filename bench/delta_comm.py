"""What the delta correction sends between ranks, per layer (issue 15), measured on CPU gloo ranks.

Over several ranks the corrected phase 1 runs layer-synchronously (``engine.delta_ranks``): in
every layer each rank gathers every rank's sampled query rows (with their cutoffs), attends them
to its own keys, and gathers everyone's (O, LSE) partials. This bench drives that very function,
``engine.delta_ranks.exchange``, with random tensors at a model's attention shape and the
engine's own block plan, in real processes over gloo, and records per layer and rank:

- the bytes each rank receives in every ``all_gather`` (counted at ``torch.distributed``);
- the time of the exchange with no keys to attend (``comm_ms``: only the collectives, the same
  messages), and with this rank's keys (``exchange_ms``: plus the partials' attention);
- the same bytes from the formula (``formula_bytes``), which the JSON also gives at other shapes
  (``--formula-contexts``, ``--formula-ranks``): e.g. 128K tokens at the 8B shape for NCCL.

    python -m bench.delta_comm --ranks 2 3 --context 32768 --stride 64 --out docs/delta-comm.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from engine.plan import default_block_size, plan_blocks

SHAPE_8B = {"heads": 32, "kv_heads": 8, "head_dim": 128, "layers": 32}


def sampled_rows(plan, rank: int, stride: int) -> list[tuple[int, int]]:
    """(block's global start, rows) of every block of ``rank`` that has exact rows: all but block
    0 (as ``engine.delta_ranks.delta_attention`` picks them)."""
    out = []
    for i in plan.ranks[rank]:
        start, stop = plan.blocks[i]
        if start > 0:
            out.append((start, -(-(stop - start) // stride)))
    return out


def formula_bytes(plan, stride: int, heads: int, head_dim: int, query_bytes: int) -> dict[str, int]:
    """Bytes one rank receives per layer in the exchange (``engine.comm.DistComm`` pads every
    rank's rows to the longest): the row counts for the queries' and the cutoffs' gathers, the
    padded queries and cutoffs (int64), and every other rank's partials over *all* rows, packed
    as ``D + 1`` float32 (O and LSE) per row and head."""
    world = len(plan.ranks)
    rows = [sum(r for _, r in sampled_rows(plan, rank, stride)) for rank in range(world)]
    longest, others = max(1, *rows), world - 1
    parts = {
        "row_counts": 2 * others * 8,
        "queries": others * longest * heads * head_dim * query_bytes,
        "cutoffs": others * longest * 8,
        "partials": others * sum(rows) * heads * (head_dim + 1) * 4,
    }
    parts["total"] = sum(parts.values())
    parts["sampled_rows"] = sum(rows)
    return parts


@contextlib.contextmanager
def counting_all_gathers():
    """Count the bytes this rank receives (``(W - 1)`` copies of the input) in every
    ``torch.distributed.all_gather`` while the block runs."""
    import torch.distributed as dist

    original, seen = dist.all_gather, {"bytes": 0, "calls": 0}

    def counted(tensor_list, tensor, *args, **kwargs):
        seen["bytes"] += (len(tensor_list) - 1) * tensor.numel() * tensor.element_size()
        seen["calls"] += 1
        return original(tensor_list, tensor, *args, **kwargs)

    dist.all_gather = counted
    try:
        yield seen
    finally:
        dist.all_gather = original


def _rank(rank: int, world: int, init_file: str, out_prefix: str, args: dict) -> None:
    import torch.distributed as dist

    from engine.comm import DistComm
    from engine.delta_ranks import exchange

    torch.set_num_threads(args["threads"])
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        comm = DistComm(torch.device("cpu"))
        plan = plan_blocks(args["context"], args["block"], None, world)
        start, stop = plan.rank_span(rank)
        dtype = getattr(torch, args["dtype"])
        gen = torch.Generator().manual_seed(rank)
        h, hkv, d = args["heads"], args["kv_heads"], args["head_dim"]
        blocks = sampled_rows(plan, rank, args["stride"])
        rows = sum(r for _, r in blocks)
        sampled = torch.randn(1, h, rows, d, generator=gen).to(dtype)
        cut = torch.cat(
            [torch.full((r,), s, dtype=torch.long) for s, r in blocks] or [torch.zeros(0, dtype=torch.long)]
        )
        k = torch.randn(1, hkv, stop - start, d, generator=gen).to(dtype)
        v = torch.randn(1, hkv, stop - start, d, generator=gen).to(dtype)
        scale = d**-0.5
        result = {"rank": rank, "rows": rows, "keys": stop - start, "comm_ms": [], "exchange_ms": []}
        for name, keys, layers in (
            ("comm_ms", None, args["layers"]),
            ("exchange_ms", k, args["compute_layers"]),
        ):
            for _ in range(layers):
                comm.barrier()
                with counting_all_gathers() as seen:
                    started = time.perf_counter()
                    exchange(comm, sampled, cut, keys, None if keys is None else v, start, scale)
                    result[name].append((time.perf_counter() - started) * 1e3)
                result["bytes_per_layer"], result["all_gathers_per_layer"] = seen["bytes"], seen["calls"]
        Path(f"{out_prefix}.{rank}").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def measure(world: int, args: dict) -> dict:
    """One run over ``world`` spawned gloo ranks: every rank's result and the formula's bytes."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        mp.spawn(_rank, args=(world, os.path.join(tmp, "init"), out, args), nprocs=world, join=True)
        ranks = [json.loads(Path(f"{out}.{r}").read_text()) for r in range(world)]
    plan = plan_blocks(args["context"], args["block"], None, world)
    elt = torch.empty(0, dtype=getattr(torch, args["dtype"])).element_size()
    for r in ranks:
        r["comm_ms_median"] = statistics.median(r["comm_ms"])
        r["exchange_ms_median"] = statistics.median(r["exchange_ms"]) if r["exchange_ms"] else None
    return {
        "ranks": world,
        "blocks": len(plan.blocks),
        "blocks_per_rank": [len(own) for own in plan.ranks],
        "formula_bytes": formula_bytes(plan, args["stride"], args["heads"], args["head_dim"], elt),
        "per_rank": ranks,
    }


def formula_table(contexts, worlds, strides, shape: dict, query_bytes: int = 2) -> list[dict]:
    """The formula's bytes per rank and layer, and per phase 1 (times the layers), with the CLI's
    default blocks: the numbers to expect from NCCL on GPUs (bf16 queries)."""
    rows = []
    for n in contexts:
        for world in worlds:
            block = default_block_size(n, world)
            plan = plan_blocks(n, block, None, world)
            for stride in strides:
                parts = formula_bytes(plan, stride, shape["heads"], shape["head_dim"], query_bytes)
                rows.append(
                    {
                        "context": n,
                        "ranks": world,
                        "block": block,
                        "stride": stride,
                        **{f"{k}_bytes" if k != "sampled_rows" else k: v for k, v in parts.items()},
                        "phase1_bytes": parts["total"] * shape["layers"],
                    }
                )
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, nargs="+", default=[2, 3])
    p.add_argument("--context", type=int, default=32768)
    p.add_argument("--block", type=int, default=None, help="default: the CLI's for the rank count")
    p.add_argument("--stride", type=int, default=64)
    p.add_argument("--heads", type=int, default=SHAPE_8B["heads"])
    p.add_argument("--kv-heads", type=int, default=SHAPE_8B["kv_heads"])
    p.add_argument("--head-dim", type=int, default=SHAPE_8B["head_dim"])
    p.add_argument("--dtype", default="bfloat16", help="of the queries and keys (the GPU's)")
    p.add_argument("--layers", type=int, default=8, help="layers timed with no keys (communication)")
    p.add_argument("--compute-layers", type=int, default=2, help="layers timed with the attention")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    p.add_argument("--formula-contexts", type=int, nargs="+", default=[32768, 131072])
    p.add_argument("--formula-ranks", type=int, nargs="+", default=[2, 3, 4, 8])
    p.add_argument("--formula-strides", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    report = {"command": "python -m bench.delta_comm " + " ".join(argv or sys.argv[1:]), "runs": []}
    report["torch"], report["cpu_count"] = torch.__version__, os.cpu_count()
    report["load_average_before"] = os.getloadavg()
    for world in args.ranks:
        settings = {k: v for k, v in vars(args).items() if k != "out"}
        settings["block"] = args.block or default_block_size(args.context, world)
        run = measure(world, settings)
        run["settings"] = settings
        report["runs"].append(run)
        medians = [r["comm_ms_median"] for r in run["per_rank"]]
        print(
            f"{world} ranks: {run['per_rank'][0]['bytes_per_layer'] / 1e6:.2f} MB received per rank "
            f"and layer (formula {run['formula_bytes']['total'] / 1e6:.2f}); collectives "
            f"{max(medians):.1f} ms per layer; with the attention "
            f"{max(r['exchange_ms_median'] or 0 for r in run['per_rank']):.0f} ms",
            flush=True,
        )
    report["load_average_after"] = os.getloadavg()
    shape = dict(SHAPE_8B, heads=args.heads, head_dim=args.head_dim)
    report["formula"] = formula_table(args.formula_contexts, args.formula_ranks, args.formula_strides, shape)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
