"""Find the rank processes of a starcli job through /proc (Linux), for fault-injection tests."""

from __future__ import annotations

import os
from pathlib import Path


def job_ranks(launcher_pid: int) -> dict[int, int]:
    """``{rank: pid}`` of the live engine ranks started on behalf of ``launcher_pid``."""
    ranks = {}
    marker = ["--launcher-pid", str(launcher_pid)]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if not any(argv[i : i + 2] == marker for i in range(len(argv))) or "engine" not in argv:
                continue
            if (entry / "stat").read_text().split()[2] == "Z":
                continue
            env = dict(
                item.split("=", 1)
                for item in (entry / "environ").read_bytes().decode(errors="replace").split("\0")
                if "=" in item
            )
        except OSError:
            continue
        if "RANK" in env:
            ranks[int(env["RANK"])] = int(entry.name)
    return ranks


def any_job_process(launcher_pid: int) -> list[int]:
    """Every live process (torchrun or rank) that names ``launcher_pid`` on its command line."""
    return sorted(job_ranks(launcher_pid).values()) + [
        pid for pid in _torchrun_pids() if _is_child_of(pid, launcher_pid)
    ]


def _torchrun_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace")
                state = (entry / "stat").read_text().split()[2]
            except OSError:
                continue
            if "torch.distributed.run" in argv and state != "Z":
                pids.append(int(entry.name))
    return pids


def _is_child_of(pid: int, parent: int) -> bool:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().split()[3]) == parent
    except OSError:
        return False


def me() -> int:
    return os.getpid()


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (e.g. a job's private temp dir, which
    torchrun and every rank name in their arguments): found even after they were re-parented."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if text in argv and state != "Z":
                pids.append(int(entry.name))
    return pids
