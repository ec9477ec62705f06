"""Fake but well-formed secrets for tests, generated at run time (none is real, and none is
written in this repository, where a scanner would rightly object).

``secret_tree`` holds the cases of issue 19: what secretlint's recommended preset flagged on a
test tree, and what got past starcli before content scanning. ``MARK`` starts a comment in each
file that the model may see, so tests can check that the ordinary parts of a redacted file stay.
"""

from __future__ import annotations

import base64
import json
import random
import string

from tests.pdf_factory import make_pdf

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"


def fake(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def pem_block(rng: random.Random, kind: str = "RSA PRIVATE KEY") -> str:
    body = "\n".join(fake(rng, 64, B64) for _ in range(6))
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n"


def secret_tree(seed: int = 19) -> dict[str, bytes]:
    """path -> bytes: one secret-bearing file per case, each with the secret and nothing to
    mistake for one elsewhere."""
    rng = random.Random(seed)
    aws_id = "AKIA" + fake(rng, 16, string.ascii_uppercase + string.digits)
    aws_secret = fake(rng, 40, B64)
    ghp = "ghp_" + fake(rng, 36)
    xoxb = f"xoxb-{fake(rng, 11, string.digits)}-{fake(rng, 12, string.digits)}-{fake(rng, 24).lower()}"
    sk_live = "sk_live_" + fake(rng, 24)
    rk_live = "rk_live_" + fake(rng, 24)
    db_password = fake(rng, 18)
    service_account = {
        "type": "service_account",
        "project_id": "demo-project",
        "private_key_id": fake(rng, 40, "0123456789abcdef"),
        "private_key": pem_block(rng, "PRIVATE KEY"),
        "client_email": "robot@demo-project.iam.gserviceaccount.com",
    }
    ppk_public = "\n".join(fake(rng, 64, B64) for _ in range(2))
    ppk_private = "\n".join(fake(rng, 64, B64) for _ in range(4))
    docker_auth = base64.b64encode(f"deploy:{fake(rng, 20)}".encode()).decode()
    salt, digest = fake(rng, 16, ALNUM + "./"), fake(rng, 86, ALNUM + "./")
    return {
        "app/settings_aws.py": (
            f'# storage settings\nAWS_ACCESS_KEY_ID = "{aws_id}"\nAWS_SECRET_ACCESS_KEY = "{aws_secret}"\n'
        ).encode(),
        "scripts/release.sh": f"#!/bin/sh\n# release\nGITHUB_TOKEN={ghp} gh release create v1\n".encode(),
        "bot/notify.js": f'// notifications\nconst client = new WebClient("{xoxb}");\n'.encode(),
        "billing/keys.rb": f'# billing\nStripe.api_key = "{sk_live}"\nRESTRICTED = "{rk_live}"\n'.encode(),
        "config.py": (
            f'# database\nDATABASES = {{"default": {{"HOST": "db", "PASSWORD": "{db_password}"}}}}\n'
            f'DB_PASSWORD = "{db_password}"\n'
        ).encode(),
        ".envrc": f"# direnv\nexport GITHUB_TOKEN={ghp}\nexport SLACK_TOKEN={xoxb}\n".encode(),
        "README.md": f"# Demo\n\nDeploy with `GITHUB_TOKEN={ghp} make deploy`.\n".encode(),
        "infra/terraform.tfvars": (
            f'# infra\nregion = "eu-west-1"\naws_access_key = "{aws_id}"\naws_secret_key = "{aws_secret}"\n'
        ).encode(),
        "gcp/service-account.json": json.dumps(service_account, indent=2).encode(),
        "keys/deploy-key.txt": pem_block(rng).encode("utf-16"),  # with a BOM, as Windows tools write it
        "keys/server.ppk": (
            "PuTTY-User-Key-File-3: ssh-rsa\nEncryption: none\nComment: deploy\n"
            f"Public-Lines: 2\n{ppk_public}\nPrivate-Lines: 4\n{ppk_private}\n"
            f"Private-MAC: {fake(rng, 64, '0123456789abcdef')}\n"
        ).encode(),
        ".docker/config.json": json.dumps(
            {"auths": {"registry.example.com": {"auth": docker_auth}}}
        ).encode(),
        "docs/tokens.pdf": make_pdf([[f"GitHub: {ghp}", f"Stripe: {sk_live}"]]),
        "etc/shadow": (f"root:$6${salt}${digest}:19700:0:99999:7:::\ndaemon:*:19700:0:99999:7:::\n").encode(),
        "etc/app-shadow-copy.txt": f"admin:$6${salt}${digest}:19700:0:99999:7:::\n".encode(),
    }


def env_file(seed: int = 19) -> bytes:
    """A ``.env`` as people write them: unquoted values."""
    rng = random.Random(seed)
    url = f"postgres://app:{fake(rng, 16)}@db:5432/app"
    return f"DATABASE_URL={url}\nSTRIPE_KEY=sk_live_{fake(rng, 24)}\n".encode()
