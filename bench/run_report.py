"""The report every CPU start-up benchmark writes (``startup``, ``chat_followup``,
``saved_context``): when and where it ran, then its own figures, as JSON on stdout and in ``--out``."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_header(doc: str) -> dict[str, Any]:
    """Date, machine, ``OMP_NUM_THREADS`` (the figures depend on it) and the document, relative to
    the repository."""
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "doc": os.path.relpath(doc, ROOT),
    }


def write_report(result: dict[str, Any], out: str | None) -> None:
    """Print the result as indented JSON and, given ``out``, write it there too."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
