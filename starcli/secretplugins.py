"""detect-secrets (Yelp) over a whole text: its plugins and its false-positive filters, fast
enough for the large files and logs starcli reads.

detect-secrets scans line by line, each line through every plugin and filter with its own
argument injection: about 150 KB/s on one core, so a 100 MB log would take minutes. The plugins
are regular expressions that never need more than one line, so we first run each plugin over
chunks of ``CHUNK_LINES`` lines joined by newlines (one C-level regex pass per plugin and chunk);
only the lines of a chunk where a plugin found something go through detect-secrets' own per-line
pipeline (line filters, the plugins that fired, secret filters, exactly as ``detect-secrets scan``
runs them). A match within one line is also a match within the chunk (the newline is whitespace
and a non-word character to the regexes' lookarounds), so the chunk pass only ever leaves out
lines that the per-line pipeline would pass; ``tests/test_secret_content.py`` checks the two
against each other. Nothing here touches the network: verification is off.

The plugins used are every built-in one but ``LEFT_OUT_PLUGINS``, with the high-entropy limits of
``ENTROPY_LIMITS`` (measured: docs/secrets.md).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

CHUNK_LINES = 256
MIN_SECRET_LENGTH = 12  # a reported value shorter than this is a token's prefix, not the token
# An IP address is not a credential (docs and logs are full of them); detect-secrets' private key
# rule fires on a header alone ("files start with -----BEGIN PRIVATE KEY-----"), so starcli's
# own rule, which needs a key body, replaces it (starcli.secretscan).
LEFT_OUT_PLUGINS = frozenset({"IPPublicDetector", "PrivateKeyDetector"})
# Shannon entropy a quoted string must exceed to count (detect-secrets' defaults; docs/secrets.md).
ENTROPY_LIMITS = {"Base64HighEntropyString": 4.5, "HexHighEntropyString": 3.0}


@dataclass(frozen=True)
class Finding:
    """One secret: the 1-based line it is on, the detector that found it (detect-secrets' own
    name, "GitHub Token"), and the secret's text (to redact it; never shown)."""

    line: int
    detector: str
    value: str


def detect(text: str, filename: str) -> list[Finding]:
    """Every secret detect-secrets' plugins find in ``text``, in line order. ``filename`` picks
    the keyword rules (``config.py`` needs quotes, ``.yaml`` does not), as it does in
    detect-secrets; it need not exist."""
    lines = [line.rstrip() for line in text.splitlines()]
    with _settings():
        plugins = _plugins()
        found: list[Finding] = []
        for start in range(0, len(lines), CHUNK_LINES):
            chunk = lines[start : start + CHUNK_LINES]
            fired = [plugin for plugin in plugins if _fires(plugin, "\n".join(chunk), filename)]
            if not fired:
                continue
            for offset, line in enumerate(chunk):
                hits = [plugin for plugin in fired if _fires(plugin, line, filename)]
                if hits:
                    found.extend(_scan_one_line(hits, lines, start + offset + 1, filename))
    return found


def _fires(plugin, text: str, filename: str) -> bool:
    """Whether the plugin finds anything in ``text`` before any filter (the cheap first pass).
    The keyword plugin, the slowest by far, only sees the lines holding one of its keywords
    (``DENYLIST``; each of its patterns contains one): a line that has none cannot match."""
    if plugin.secret_type == "Secret Keyword":
        keywords = _keywords()
        text = "\n".join(line for line in text.split("\n") if keywords.search(line))
        if not text:
            return False
    return bool(plugin.analyze_line(filename=filename, line=text, line_number=0))


@functools.lru_cache(maxsize=1)
def _keywords() -> re.Pattern:
    from detect_secrets.plugins.keyword import DENYLIST

    return re.compile("|".join(DENYLIST), re.IGNORECASE)


def _scan_one_line(plugins: list, lines: list[str], number: int, filename: str) -> Iterator[Finding]:
    """detect-secrets' own per-line pipeline (``core.scan._process_line_based_plugins``) for one
    line, limited to the plugins that fired on it; plus one filter of ours: a keyword's value
    with a space in it is prose or a format string (``SECRET = "secret: {}"``), not a password."""
    from detect_secrets.core.scan import _is_filtered_out, _scan_line
    from detect_secrets.util.code_snippet import get_code_snippet

    line = lines[number - 1]
    context = get_code_snippet(lines=lines, line_number=number)
    if _is_filtered_out(required_filter_parameters=["line"], filename=filename, line=line, context=context):
        return
    for plugin in plugins:
        for secret in _scan_line(
            plugin=plugin, filename=filename, line=line, line_number=number, context=context
        ):
            if not _is_filtered_out(
                required_filter_parameters=["context"],
                filename=filename,
                secret=secret.secret_value,
                plugin=plugin,
                line=line,
                context=context,
            ):
                value = _whole_secret(plugin, line, secret.secret_value)
                if secret.type != "Secret Keyword" or not any(c.isspace() for c in value):
                    yield Finding(number, secret.type, value)


def _whole_secret(plugin, line: str, value) -> str:
    """The text that holds the secret. detect-secrets reports a pattern's first group where it
    has one, which for some detectors is the secret (AWS, Cloudant) and for others only its
    prefix ("ghp", "glpat"); a short or missing value is widened to the pattern's whole match."""
    if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
        return value
    for pattern in getattr(plugin, "denylist", ()):
        for match in pattern.finditer(line):
            if not isinstance(value, str) or value in match.group(0):
                return match.group(0)
    return value if isinstance(value, str) else ""


def _settings():
    """detect-secrets keeps its configuration in a process-wide singleton: ours is set for the
    duration of a scan and the previous one restored after (``transient_settings``)."""
    from detect_secrets.settings import transient_settings

    return transient_settings({"plugins_used": _plugin_config()})


@functools.lru_cache(maxsize=1)
def _plugin_config() -> list[dict]:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    config = []
    for plugin in get_mapping_from_secret_type_to_class().values():
        name = plugin.__name__
        if name in LEFT_OUT_PLUGINS:
            continue
        config.append({"name": name, **({"limit": ENTROPY_LIMITS[name]} if name in ENTROPY_LIMITS else {})})
    return config


def _plugins() -> list:
    from detect_secrets.settings import get_plugins

    return list(get_plugins())
