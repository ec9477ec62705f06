"""Time and peak memory of ``starcli ask SOURCE q --dry-run`` on issue 18's hostile inputs.

Builds each input in a scratch directory, runs the real command as a subprocess (one at a time,
``OMP_NUM_THREADS=1``) with a time limit, and records wall time, peak RSS (``wait4``), the exit
code and the last stderr line. ``--code DIR`` runs another checkout's starcli (the code before a
change), so both sides are measured the same way.

    python bench/hostile_inputs.py --out docs/hostile-inputs.json [--code OLD --label before] [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build(name: str, root: Path) -> tuple[str, list[str]]:
    """The probe's source path (and extra flags), created under ``root``."""
    from tests.pdf_factory import make_pdf, make_shared_content_pdf

    line = "Keeper's log: the lamp burned 14 hours; oil 3.5 gallons; wind NW, rising.\n"
    if name == "gitignore-22-stars":
        folder = root / "repo"
        folder.mkdir()
        (folder / ".git").mkdir()
        (folder / ".gitignore").write_text("a*" * 22 + "b\n")
        (folder / ("a" * 60)).write_text(line)
        return str(folder), []
    if name == "pdf-100-pages-one-1MB-stream":
        path = root / "shared.pdf"
        path.write_bytes(make_shared_content_pdf(100, 1 << 20))
        return str(path), []
    if name == "pdf-2000-blank-pages":
        path = root / "blank.pdf"
        path.write_bytes(make_pdf([None] * 2000 + [["The only text page."]]))
        return str(path), ["--positions", "local"]
    if name.startswith("dir-") and name.endswith("x1000KiB"):
        count = int(name.split("-")[1].split("x")[0])
        folder = root / "logs"
        folder.mkdir()
        body = (line * (1000 * 1024 // len(line) + 1))[: 1000 * 1024]
        for index in range(count):
            (folder / f"part{index:04}.log.txt").write_text(body)
        return str(folder), []
    if name == "single-line-200MB":
        path = root / "one-line.txt"
        word = "lighthouse keeper logbook "
        with open(path, "w") as handle:
            for _ in range(200):
                handle.write(word * (1_000_000 // len(word)))
        return str(path), []
    if name == "sparse-1GB":
        path = root / "sparse.txt"
        with open(path, "wb") as handle:
            handle.truncate(1 << 30)
        return str(path), []
    if name == "dev-zero":
        return "/dev/zero", []
    raise ValueError(name)


PROBES = [
    "gitignore-22-stars",
    "pdf-100-pages-one-1MB-stream",
    "pdf-2000-blank-pages",
    "dir-100x1000KiB",
    "dir-513x1000KiB",
    "single-line-200MB",
    "sparse-1GB",
    "dev-zero",
]


def run(code: Path, source: str, flags: list[str], limit: float) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARCLI_")}
    env.update(OMP_NUM_THREADS="1", STARCLI_CONFIG=os.devnull, PYTHONPATH=str(code))
    if os.environ.get("STARCLI_CACHE"):
        env["STARCLI_CACHE"] = os.environ["STARCLI_CACHE"]
    command = [sys.executable, "-m", "starcli", "ask", source, "q?", "--dry-run", *flags]
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(command, cwd=code, env=env, stdout=out, stderr=err)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > limit:
                proc.kill()
                timed_out = True
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        err.seek(0)
        lines = err.read().decode(errors="replace").splitlines()
    return {
        "seconds": round(time.monotonic() - started, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "exit": None if timed_out else os.waitstatus_to_exitcode(status),
        "timed_out": timed_out,
        "stderr_last": lines[-1][:300] if lines else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose starcli runs")
    parser.add_argument("--only", action="append", help="probe names (default: all)")
    parser.add_argument("--limit", type=float, default=150.0, help="seconds before a probe is killed")
    parser.add_argument("--label", default="after", help="the key this run's results go under")
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.only or PROBES:
        with tempfile.TemporaryDirectory() as scratch:
            source, flags = build(name, Path(scratch))
            result = run(args.code.resolve(), source, flags, args.limit)
        result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores (shared VM)"
        result["date"] = time.strftime("%Y-%m-%d")
        results.setdefault(name, {})[args.label] = result
        print(name, json.dumps(result), flush=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
