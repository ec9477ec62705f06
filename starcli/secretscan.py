"""The "check secrets" stage: files that must never reach a prompt, by name and by content.

Names catch the usual places credentials live (``.env``, SSH and PuTTY keys, ``*.pem``, cloud,
Docker and package-manager credential files, ``/etc/shadow``); a file so named is never read.
Contents are checked by detect-secrets' plugins (``starcli.secretplugins``: cloud keys, tokens,
private keys, basic auth, keywords, high-entropy strings) and by the rules here that it lacks:
private key blocks of any kind (also written with ``\\n`` escapes inside JSON), PuTTY keys of
every version, and crypt(3) password hashes. ``find_secrets`` returns each finding with its line;
ingestion skips the file with the first one as the reason, or, with ``--redact-secrets``,
``redact`` replaces each with a placeholder (a private key: its whole block).
"""

from __future__ import annotations

import fnmatch
import re

from starcli.secretplugins import Finding, detect

# (glob on the file name, reason). Matched case-insensitively against the last path component.
SECRET_NAMES: tuple[tuple[str, str], ...] = (
    (".env", "environment file"),
    (".env.*", "environment file"),
    ("*.env", "environment file"),
    ("id_rsa", "private key"),
    ("id_dsa", "private key"),
    ("id_ecdsa", "private key"),
    ("id_ed25519", "private key"),
    ("*.pem", "private key or certificate"),
    ("*.key", "private key"),
    ("*.p12", "key store"),
    ("*.pfx", "key store"),
    ("*.jks", "key store"),
    ("*.keystore", "key store"),
    ("credentials.json", "credentials file"),
    ("client_secret*.json", "credentials file"),
    (".npmrc", "credentials file"),
    (".pypirc", "credentials file"),
    (".netrc", "credentials file"),
    ("_netrc", "credentials file"),
    (".pgpass", "credentials file"),
    (".git-credentials", "credentials file"),
    (".htpasswd", "credentials file"),
    ("*.ppk", "PuTTY private key"),
    ("shadow", "password hashes"),
    ("shadow-", "password hashes"),
    ("gshadow", "password hashes"),
    ("gshadow-", "password hashes"),
    ("master.passwd", "password hashes"),
)
# (parent directory, file name, reason): credential files known by where they live.
SECRET_PLACES: tuple[tuple[str, str, str], ...] = (
    (".aws", "credentials", "AWS credentials"),
    (".aws", "config", "AWS credentials"),
    (".docker", "config.json", "Docker credentials"),
)

# PEM and PGP private key blocks: the header, optional "Key: value" lines, then a base64 body;
# line breaks may be real or written as \n inside a JSON or YAML string.
_BREAK = r"(?:\s|\\[nr])+"
PRIVATE_KEY_BLOCK = re.compile(
    rf"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----{_BREAK}"
    rf"(?:[A-Za-z-]+:[^\n]*?{_BREAK})*[A-Za-z0-9+/=]{{32,}}"
)
# What a redaction replaces: a whole key, from its header to its footer (or the end of the text).
PRIVATE_KEY_SPAN = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?"
    r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
PUTTY_KEY = re.compile(r"^PuTTY-User-Key-File-\d+: .*?(?:^Private-MAC: [^\n]*|\Z)", re.MULTILINE | re.DOTALL)
# crypt(3) hashes as /etc/shadow holds them: MD5, SHA-256/512 ($1$, $5$, $6$), bcrypt, yescrypt.
PASSWORD_HASH = re.compile(
    r"\$(?:[156]\$(?:rounds=\d+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{22,86}"
    r"|2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}"
    r"|(?:y|gy|7)\$[./A-Za-z0-9]+\$[./A-Za-z0-9]*\$[./A-Za-z0-9]{43})"
)
GENERIC_DETECTORS = frozenset({"Secret Keyword", "Base64 High Entropy String", "Hex High Entropy String"})
KEY_DETECTORS = frozenset({"Private Key", "PuTTY Private Key"})  # redacted block by block
OWN_RULES = (
    ("Private Key", PRIVATE_KEY_BLOCK),
    ("PuTTY Private Key", PUTTY_KEY),
    ("Password Hash", PASSWORD_HASH),
)


def secret_by_name(relpath: str) -> str | None:
    """What secret the file's name marks it as ("environment file"), if any (``relpath`` uses
    ``/``): the detail of a ``SkipKind.SECRET`` skip."""
    parts = relpath.lower().split("/")
    name = parts[-1]
    for parent, file_name, what in SECRET_PLACES:
        if len(parts) >= 2 and parts[-2] == parent and name == file_name:
            return what
    for pattern, what in SECRET_NAMES:
        if fnmatch.fnmatchcase(name, pattern):
            return what
    return None


def find_secrets(text: str, filename: str) -> list[Finding]:
    """Every secret in ``text``, in line order: detect-secrets' findings and our own rules'.
    ``filename`` (a path as shown) picks detect-secrets' keyword rules by its extension. On a
    line, named detectors ("GitHub Token") come before the generic ones (keywords, entropy)."""
    findings = set(detect(text, filename))
    for detector, pattern in OWN_RULES:
        for match in pattern.finditer(text):
            findings.add(Finding(text.count("\n", 0, match.start()) + 1, detector, match.group()))
    return sorted(findings, key=lambda f: (f.line, f.detector in GENERIC_DETECTORS, f.detector, f.value))


def describe(findings: list[Finding]) -> tuple[str, str]:
    """``(detail, note)`` of a ``SkipKind.SECRET`` skip: "GitHub Token on line 3", "2 more"."""
    first = findings[0]
    more = len({(f.line, f.detector) for f in findings}) - 1
    return f"{first.detector} on line {first.line}", (f"{more} more" if more else "")


def redact(text: str, findings: list[Finding]) -> str | None:
    """``text`` with every finding replaced by ``<redacted: DETECTOR>`` wherever it occurs (a
    private key: its whole block); None when a key was found whose block cannot be delimited,
    so the file has to be skipped instead."""
    keys = [f for f in findings if f.detector in KEY_DETECTORS]
    if keys:
        text = PRIVATE_KEY_SPAN.sub("<redacted: Private Key>", text)
        text = PUTTY_KEY.sub("<redacted: PuTTY Private Key>", text)
        if any(key.value in text for key in keys):
            return None
    for finding in sorted(findings, key=lambda f: -len(f.value)):  # longest first: no partial leftovers
        if finding.detector not in KEY_DETECTORS and finding.value:
            text = text.replace(finding.value, f"<redacted: {finding.detector}>")
    return text
