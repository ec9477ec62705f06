"""The "check secrets" stage: files that must never reach a prompt, by name and by content.

Names catch the usual places credentials live (``.env``, SSH keys, ``*.pem``, cloud and package
manager credential files); the content check catches a private key pasted anywhere. A match
skips the whole file: redacting would still leak the key's shape and surroundings.
"""

from __future__ import annotations

import fnmatch
import re

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
)

# PEM and PGP private key blocks: the header, optional "Key: value" lines, then base64 body.
PRIVATE_KEY_BLOCK = re.compile(
    rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----\s+"
    rb"(?:[A-Za-z-]+:[^\n]*\n\s*)*[A-Za-z0-9+/=]{32,}"
)


def secret_by_name(relpath: str) -> str | None:
    """What secret the file's name marks it as ("environment file"), if any (``relpath`` uses
    ``/``): the detail of a ``SkipKind.SECRET`` skip."""
    parts = relpath.lower().split("/")
    name = parts[-1]
    if len(parts) >= 2 and parts[-2] == ".aws" and name in ("credentials", "config"):
        return "AWS credentials"
    for pattern, what in SECRET_NAMES:
        if fnmatch.fnmatchcase(name, pattern):
            return what
    return None


def secret_in_content(data: bytes) -> str | None:
    """The detail of a ``SkipKind.SECRET`` skip ("private key") if the bytes hold a private key block."""
    if b"PRIVATE KEY" in data and PRIVATE_KEY_BLOCK.search(data):
        return "private key"
    return None
