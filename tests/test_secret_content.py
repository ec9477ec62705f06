"""Secrets in file contents (issue 19): detect-secrets' plugins and starcli's own rules over every
text file, PDF text, named file and stdin; skipped with the detector and line, or redacted.

The fixtures (tests/secret_fixtures.py) are fake but well-formed secrets generated at run time.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from typer.testing import CliRunner

from starcli import secretplugins
from starcli.cli import app
from starcli.ingest import InputError, ingest, render_documents
from starcli.pdf import extract_pdf
from starcli.secretscan import find_secrets
from starcli.textfile import decode_text
from tests.secret_fixtures import env_file, secret_tree

ORDINARY = {
    "src/app.py": "PORT = 7421\n\n\ndef serve():\n    return PORT\n",
    "NOTES.md": "# Notes\nport 7421\n",
}
# The reason each file is skipped for (walked with default rules): name rules first, then the
# first finding by content, named detectors before keywords and entropy on a line.
EXPECTED = {
    "app/settings_aws.py": "secret: AWS Access Key on line 2 (3 more)",
    "scripts/release.sh": "secret: GitHub Token on line 3",
    "bot/notify.js": "secret: Slack Token on line 2",
    "billing/keys.rb": "secret: Stripe Access Key on line 2 (4 more)",
    "config.py": "secret: Secret Keyword on line 2 (1 more)",
    ".envrc": "secret: GitHub Token on line 2 (1 more)",
    "README.md": "secret: GitHub Token on line 3",
    "infra/terraform.tfvars": "secret: AWS Access Key on line 3 (3 more)",
    "gcp/service-account.json": "secret: Private Key on line 5",
    "keys/deploy-key.txt": "secret: Private Key on line 1",
    "keys/server.ppk": "secret: PuTTY private key",
    ".docker/config.json": "secret: Docker credentials",
    "docs/tokens.pdf": "secret: GitHub Token on line 2 (1 more)",
    "etc/shadow": "secret: password hashes",
    "etc/app-shadow-copy.txt": "secret: Password Hash on line 1",
}


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "repo"
    files = {**secret_tree(), **{path: text.encode() for path, text in ORDINARY.items()}}
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


def _text(path: str, data: bytes) -> str:
    return extract_pdf(data).text if path.endswith(".pdf") else decode_text(data)[0]


def _secret_values() -> list[str]:
    """Every secret value in the fixtures, as the scanner reports them (checked non-empty)."""
    values = [f.value for path, data in secret_tree().items() for f in find_secrets(_text(path, data), path)]
    assert len(values) >= len(EXPECTED) - 3  # the three name-only cases may also match by content
    return values


def test_every_case_of_the_issue_is_skipped_with_its_detector_and_line(tree):
    result = ingest([str(tree)])
    assert sorted(d.path for d in result.documents) == sorted(f"{tree}/{p}" for p in ORDINARY)
    reasons = {s.path.removeprefix(f"{tree}/"): s.reason for s in result.skipped}
    assert reasons == EXPECTED


def test_redact_keeps_the_files_without_one_secret(tree):
    result = ingest([str(tree)], redact_secrets=True)
    kept = {d.path.removeprefix(f"{tree}/"): d.text for d in result.documents}
    named_out = {"keys/server.ppk", ".docker/config.json", "etc/shadow"}  # secret by name: still out
    assert set(kept) == (set(EXPECTED) - named_out) | set(ORDINARY)
    context = render_documents(result.documents)
    for value in _secret_values():
        assert value not in context
    assert "BEGIN RSA PRIVATE KEY" not in context and "PuTTY-User-Key-File" not in context
    assert '"PASSWORD": "<redacted: Secret Keyword>"' in kept["config.py"]
    assert "GITHUB_TOKEN=<redacted: GitHub Token> gh release create v1" in kept["scripts/release.sh"]
    assert '"client_email": "robot@demo-project.iam.gserviceaccount.com"' in kept["gcp/service-account.json"]
    assert kept["docs/tokens.pdf"].startswith("[page 1]\nGitHub: <redacted: GitHub Token>")
    for path, text in kept.items():
        assert find_secrets(text, path) == [], path  # nothing left for the scanner either
    assert any(w.startswith(f"{tree}/config.py: secrets replaced") for w in result.warnings)


def test_a_named_env_file_or_piped_env_is_refused(tmp_path):
    env = tmp_path / ".env"
    env.write_bytes(env_file())
    with pytest.raises(InputError, match=r"\.env: not read: its name marks a secret file"):
        ingest([str(env)])
    with pytest.raises(InputError, match=r"<stdin>: not sent to the model: it holds a secret \(Basic Auth"):
        ingest(["-"], stdin=io.BytesIO(env_file()))
    redacted = ingest(["-"], stdin=io.BytesIO(env_file()), redact_secrets=True).documents[0].text
    assert "postgres://app:<redacted: Basic Auth Credentials>@db" in redacted
    assert "sk_live_" not in redacted


def test_a_named_file_with_a_secret_is_refused_not_read(tmp_path):
    for path, data in secret_tree().items():
        if path.endswith(".ppk") or path.startswith((".docker", "etc/shadow")):
            continue  # refused by name (below)
        (tmp_path / "named").mkdir(exist_ok=True)
        target = tmp_path / "named" / path.replace("/", "_")
        target.write_bytes(data)
        with pytest.raises(InputError, match=r"not sent to the model: it holds a secret \(.+ on line \d+"):
            ingest([str(target)])
    for name in ("server.ppk", "shadow"):
        (tmp_path / name).write_text("x\n")
        with pytest.raises(InputError, match="not read: its name marks a secret file"):
            ingest([str(tmp_path / name)])


def test_the_fast_pass_finds_what_detect_secrets_own_pipeline_finds(monkeypatch):
    """``detect`` (chunks first, then lines) against detect-secrets' line-by-line scan, with
    chunks of 3 lines so that secrets sit on chunk edges."""
    from detect_secrets.core.scan import _process_line_based_plugins

    texts = {path: _text(path, data) for path, data in secret_tree().items()}
    texts["tests/test_secrets_cli.py"] = Path("tests/test_secrets_cli.py").read_text(encoding="utf-8")
    texts["padded.py"] = "\n".join(["x = 1"] * 5 + texts["config.py"].splitlines() + ["y = 2"] * 5)
    monkeypatch.setattr(secretplugins, "CHUNK_LINES", 3)
    for path, text in texts.items():
        with secretplugins._settings():
            lines = list(enumerate(text.splitlines(), start=1))
            reference = {(s.line_number, s.type) for s in _process_line_based_plugins(lines, path)}
        found = secretplugins.detect(text, path)
        assert {(f.line, f.detector) for f in found} == reference, path
        assert all(len(f.value) >= secretplugins.MIN_SECRET_LENGTH for f in found), path


def test_no_false_alarm_on_the_samples_and_the_code():
    for path in ("samples/long.txt", "samples/README.md", "starcli/secretscan.py", "starcli/cli.py"):
        assert find_secrets(Path(path).read_text(encoding="utf-8"), path) == [], path
    assert find_secrets("PEM files start with -----BEGIN PRIVATE KEY----- and a body.\n", "a.md") == []


def test_cli_lists_each_skip_and_refuses_a_named_secret_in_one_line(tree):
    result = CliRunner().invoke(app, ["summarize", str(tree), "--dry-run"])
    assert result.exit_code == 0, result.stderr
    assert f"{tree}/.envrc: secret: GitHub Token on line 2 (1 more)" in result.stdout
    named = CliRunner().invoke(app, ["ask", str(tree / "README.md"), "what?", "--dry-run"])
    assert named.exit_code == 2
    assert named.stderr.strip().splitlines() == [
        f"Error: {tree}/README.md: not sent to the model: it holds a secret (GitHub Token on line 3); "
        "--redact-secrets reads it with each secret replaced by a placeholder"
    ]
    redacted = CliRunner().invoke(
        app, ["ask", str(tree / "README.md"), "what?", "--dry-run", "--redact-secrets"]
    )
    assert redacted.exit_code == 0, redacted.stderr
