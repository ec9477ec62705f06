"""How often content secret scanning flags ordinary files, and how fast it runs.

Walks each root with starcli's own rules (``starcli.walk``: default excludes, .gitignore, the
1 MiB cap, secret names), decodes each file as ingestion does (binary files and PDFs left out:
PDFs are rare in these trees), and times ``starcli.secretscan.find_secrets`` on the text. Prints
one JSON object: per root, files scanned and flagged, the flagged share, bytes, seconds, findings
by detector and a sample of flagged files. ``--speed FILE`` also times detect-secrets' own
line-by-line pipeline on FILE against ``find_secrets``.

    python bench/secret_scan.py . /path/to/site-packages --speed samples/logbook.txt > docs/secrets.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter
from pathlib import Path

from starcli.secretscan import find_secrets
from starcli.textfile import decode_text, looks_like_pdf, read_bytes
from starcli.walk import walk_repository

SAMPLE = 40  # flagged files listed per root


def scan_root(root: str) -> dict:
    walk = walk_repository(root)
    scanned = flagged = size = 0
    seconds = 0.0
    detectors: Counter[str] = Counter()
    examples = []
    for found in walk.files:
        try:
            data = read_bytes(found.path, 1 << 20, walked=True)
        except Exception:  # noqa: BLE001 - unreadable files are not part of the measure
            continue
        if looks_like_pdf(data, found.display) or (decoded := decode_text(data)) is None:
            continue
        text = decoded[0]
        started = time.perf_counter()
        findings = find_secrets(text, found.display)
        seconds += time.perf_counter() - started
        scanned += 1
        size += len(data)
        if findings:
            flagged += 1
            detectors.update({f.detector for f in findings})
            if len(examples) < SAMPLE:
                first = findings[0]
                examples.append({"path": found.display, "detector": first.detector, "line": first.line})
    return {
        "root": root,
        "files_scanned": scanned,
        "files_flagged": flagged,
        "flagged_share": round(flagged / scanned, 4) if scanned else 0.0,
        "bytes": size,
        "scan_s": round(seconds, 2),
        "mb_per_s": round(size / seconds / 1e6, 2) if seconds else None,
        "files_by_detector": dict(detectors.most_common()),
        "examples": examples,
    }


def speed(path: str) -> dict:
    """``find_secrets`` against detect-secrets' own line-by-line pipeline on one file."""
    from detect_secrets.core.scan import _process_line_based_plugins

    from starcli import secretplugins

    text = Path(path).read_text(encoding="utf-8", errors="replace")
    started = time.perf_counter()
    ours = find_secrets(text, path)
    ours_s = time.perf_counter() - started
    with secretplugins._settings():
        started = time.perf_counter()
        theirs = list(_process_line_based_plugins(list(enumerate(text.splitlines(), start=1)), path))
        theirs_s = time.perf_counter() - started
    return {
        "file": path,
        "bytes": len(text.encode()),
        "find_secrets_s": round(ours_s, 3),
        "detect_secrets_line_by_line_s": round(theirs_s, 3),
        "findings": [len(ours), len(theirs)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+")
    parser.add_argument("--speed", metavar="FILE")
    args = parser.parse_args()
    result = {
        "machine": f"{platform.machine()} {platform.system()}, {platform.python_version()}",
        "roots": [scan_root(root) for root in args.roots],
    }
    if args.speed:
        result["speed"] = speed(args.speed)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
