"""Secrets and the network (issue 5): a repository walk never sends credentials to the model, and
says what it left out; nothing talks to the network unless a hub model is asked for.

What is checked is what the engine receives: the token ids of the request, decoded back to text,
not just the report. One real answer with the default model runs in this process, with every
non-loopback connection refused and recorded. Writes outside the cache and temp dirs, and the
network from torchrun ranks: tests/test_faults_cli.py::test_two_runs_at_once_share_nothing.
"""

from __future__ import annotations

import json
import socket

import pytest
from typer.testing import CliRunner

from starcli import launch
from starcli.cli import app

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("isolated")]  # isolated: conftest

PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACBmZWVkZmFjZWRlYWRiZWVmY2FmZWJhYmVmZWVkZmFjZWRlYWQAAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
SECRETS = {  # path -> content; every content holds a marker that must not reach the model
    ".env": "API_KEY=sk-live-MARKER-ENV\n",
    ".env.production": "DATABASE_URL=postgres://admin:MARKER-ENVPROD@db/prod\n",
    "id_rsa": PRIVATE_KEY.replace("OPENSSH", "RSA") + "MARKER-IDRSA\n",
    "deploy/server.pem": "MARKER-PEM\n" + PRIVATE_KEY,
    "deploy/tls.key": "MARKER-KEY\n",
    "config/credentials.json": '{"token": "MARKER-CREDJSON"}\n',
    "config/client_secret_123.json": '{"secret": "MARKER-CLIENTSECRET"}\n',
    ".aws/credentials": "[default]\naws_secret_access_key = MARKER-AWS\n",
    ".npmrc": "//registry.npmjs.org/:_authToken=MARKER-NPM\n",
    ".pypirc": "[pypi]\npassword = MARKER-PYPI\n",
    ".netrc": "machine example.com login me password MARKER-NETRC\n",
    ".git-credentials": "https://me:MARKER-GITCRED@example.com\n",
    "notes/pasted.md": "Keep this safe MARKER-PASTED\n" + PRIVATE_KEY,  # found by content
}
ORDINARY = {
    "README.md": "# Beacon\nBeacon listens on port 7421 by default.\n",
    "beacon/server.py": "PORT = 7421\n\n\ndef serve():\n    return PORT\n",
}


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    for path, text in {**SECRETS, **ORDINARY}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


@pytest.fixture
def network_refused(monkeypatch):
    """Refuse and record every connection that is not to this machine; no HF_*_OFFLINE help."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    attempts: list[object] = []
    connect = socket.socket.connect

    def guarded(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1"):
            attempts.append(address)
            raise OSError(101, "network access refused by the test")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return attempts


def test_secrets_never_reach_the_model_and_are_reported(repo, monkeypatch, network_refused):
    sent = []
    real_run_request = launch.run_request

    def recording_run_request(request, **kwargs):
        sent.append(request)
        return real_run_request(request, **kwargs)

    monkeypatch.setattr(launch, "run_request", recording_run_request)
    question = "What port does Beacon listen on by default?"
    result = CliRunner().invoke(app, ["ask", str(repo), question, "--max-tokens", "12", "--json"])
    assert result.exit_code == 0, result.stderr

    tokenizer = launch.load_tokenizer(None)
    context = tokenizer.decode(sent[0].context)
    query = tokenizer.decode(sent[0].queries[0])
    assert "port 7421" in context and "beacon/server.py" in context  # the ordinary files went in
    for text in (context, query):
        assert "MARKER" not in text and "PRIVATE KEY" not in text
    for path in SECRETS:
        assert f"===== {repo}/{path} =====" not in context

    data = json.loads(result.stdout)
    skipped = {item["path"]: item["reason"] for item in data["skipped"]}
    for path in SECRETS:
        assert skipped[f"{repo}/{path}"].startswith("secret: "), (path, skipped)
    assert f"skipped {len(SECRETS)} files" in result.stderr and "secret" in result.stderr
    assert data["answer"].strip()  # a real answer was generated from what was sent
    assert network_refused == []  # model, tokenizer and window lookups all stayed local


def test_dry_run_lists_each_secret_with_its_reason(repo):
    result = CliRunner().invoke(app, ["summarize", str(repo), "--dry-run"])
    assert result.exit_code == 0, result.stderr
    for path in SECRETS:
        line = next(line for line in result.stdout.splitlines() if line.strip().startswith(f"{repo}/{path}:"))
        assert ": secret: " in line
