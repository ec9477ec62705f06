"""``starcli context`` (issue 19): the documents exactly as the model reads them, after every
filter, as text, files-to-prompt's cxml, or markdown; a closed pipe ends it quietly (141)."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from starcli import prompt
from starcli.cli import app
from tests.secret_fixtures import secret_tree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input, prog_name="starcli")


def test_text_is_what_ask_hands_to_the_prompt(monkeypatch):
    """The context command and a real ``ask`` (to its dry-run plan, where the documents text is
    handed on) read the same sources into the same text, byte for byte."""
    handed = []
    real = prompt.estimate_plan

    def recording(settings, nproc, device, ingested, documents_text, *rest, **kwargs):
        from starcli.ingest import render_documents  # what a real run hands the prompt

        handed.append(documents_text if documents_text is not None else render_documents(ingested.documents))
        return real(settings, nproc, device, ingested, documents_text, *rest, **kwargs)

    monkeypatch.setattr(prompt, "estimate_plan", recording)
    sources = ["samples/tinyrepo", "samples/report.pdf"]
    asked = run("ask", *sources, "What port?", "--dry-run")
    assert asked.exit_code == 0, asked.stderr
    shown = run("context", *sources)
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout == handed[0]
    assert "===== samples/report.pdf =====\n[page 1]" in shown.stdout
    assert "samples/tinyrepo/.env" not in shown.stdout  # a secret by name: left out, as for ask
    assert "skipped 4 files" in shown.stderr


def test_xml_is_files_to_prompt_cxml(tmp_path):
    files = {"a.txt": "first file\n", "b/c.md": "# second\nno trailing newline"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    result = run("context", str(tmp_path), "--format", "xml")
    assert result.exit_code == 0, result.stderr
    root = ET.fromstring(result.stdout)  # these files hold no '<' or '&': it parses as XML
    assert root.tag == "documents"
    documents = root.findall("document")
    assert [d.get("index") for d in documents] == ["1", "2"]
    for document, (name, text) in zip(documents, files.items(), strict=True):
        assert document.findtext("source") == f"{tmp_path}/{name}"
        assert document.findtext("document_content") == "\n" + text.rstrip("\n") + "\n"
    assert result.stdout.startswith('<documents>\n<document index="1">\n<source>')


def test_markdown_fences_outlast_the_backticks_inside(tmp_path):
    (tmp_path / "notes.md").write_text("Use\n````\ncode\n````\nlike this.\n")
    (tmp_path / "run.py").write_text("print('hi')\n")
    result = run("context", str(tmp_path), "--format", "markdown")
    assert result.exit_code == 0, result.stderr
    assert f"{tmp_path}/notes.md\n`````md\nUse\n````\ncode\n````\nlike this.\n`````\n" in result.stdout
    assert f"{tmp_path}/run.py\n```py\nprint('hi')\n```\n" in result.stdout


def test_stdin_and_secrets_follow_the_same_filters(tmp_path):
    assert run("context", "-", input="piped words\n").stdout == "===== <stdin> =====\npiped words\n"
    root = tmp_path / "repo"
    root.mkdir()
    (root / "README.md").write_bytes(secret_tree()["README.md"])
    (root / "app.py").write_text("PORT = 1\n")
    plain = run("context", str(root))
    assert plain.exit_code == 0 and "README.md" not in plain.stdout and "PORT = 1" in plain.stdout
    redacted = run("context", str(root), "--redact-secrets")
    assert "GITHUB_TOKEN=<redacted: GitHub Token> make deploy" in redacted.stdout
    refused = run("context", str(root / "README.md"))
    assert refused.exit_code == 2 and refused.stderr.startswith("Error: ") and refused.stdout == ""


@pytest.mark.parametrize("args", [["--format", "json"], ["no/such/dir"]])
def test_bad_input_is_one_error_line(args):
    result = run("context", "samples/long.txt", *args) if args[0] == "--format" else run("context", *args)
    assert result.exit_code == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("Error: ")


def test_a_closed_pipe_ends_it_quietly_with_141():
    script = (
        f"{sys.executable} -m starcli context samples/logbook.txt samples/long.txt | head -c 100 >/dev/null;"
        " echo rc=${PIPESTATUS[0]}"
    )
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.stdout.strip() == "rc=141"
    assert proc.stderr == ""
