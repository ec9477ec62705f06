"""PDFs: page markers, encryption, damaged files, pages without a text layer."""

from __future__ import annotations

import logging

import pytest

from starcli.ingest import InputError, ingest
from tests.pdf_factory import make_pdf


def write(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_text_per_page_with_markers(tmp_path):
    path = write(tmp_path, "report.pdf", make_pdf([["Revenue rose (again)."], ["Codename: BLUE HERON"]]))
    result = ingest([path])
    [doc] = result.documents
    assert doc.kind == "pdf" and doc.path == path
    assert doc.text == "[page 1]\nRevenue rose (again).\n\n[page 2]\nCodename: BLUE HERON\n"
    assert doc.tokens > 5 and result.warnings == []


def test_pages_without_text_layer_are_reported(tmp_path):
    path = write(tmp_path, "scan.pdf", make_pdf([["typed page"], None, ["typed"], None, None]))
    result = ingest([path])
    assert "[page 2] (no text)" in result.documents[0].text
    assert result.warnings == [f"{path}: pages 2, 4, 5 have no text layer (scanned?)"]


def test_fully_scanned_pdf_is_skipped_and_alone_is_an_input_error(tmp_path):
    scan = write(tmp_path, "scan.pdf", make_pdf([None, None]))
    other = write(tmp_path, "notes.txt", b"notes\n")
    result = ingest([scan, other])
    assert [(s.path, s.reason) for s in result.skipped] == [(scan, "no text layer (scanned page?)")]
    with pytest.raises(InputError, match=r"no text layer .*ocrmypdf"):
        ingest([scan])


def test_encrypted_pdf_that_the_empty_password_opens(tmp_path):
    path = write(tmp_path, "locked.pdf", make_pdf([["Readable behind an empty password"]], password=""))
    assert "Readable behind an empty password" in ingest([path]).documents[0].text


def test_encrypted_pdf_with_a_real_password_is_an_input_error(tmp_path):
    path = write(tmp_path, "secret.pdf", make_pdf([["hidden"]], password="hunter2"))
    with pytest.raises(InputError) as info:
        ingest([path])
    assert str(info.value).startswith(f"{path}: encrypted PDF (password needed); decrypt it first")


@pytest.mark.parametrize("cut", [0.5, 0.1, 20])
def test_truncated_pdf_is_an_input_error(tmp_path, caplog, cut):
    data = make_pdf([["some text"], ["more text"]])
    size = int(len(data) * cut) if cut < 1 else cut
    path = write(tmp_path, "cut.pdf", data[:size])
    with caplog.at_level(logging.DEBUG), pytest.raises(InputError, match="malformed PDF"):
        ingest([path])
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]  # pypdf's chatter is kept quiet


@pytest.mark.parametrize("data", [b"%PDF-1.7\n" + bytes(range(256)) * 4, b"not a pdf at all\n", b""])
def test_malformed_pdf_is_an_input_error(tmp_path, data):
    with pytest.raises(InputError, match="malformed PDF"):
        ingest([write(tmp_path, "bad.pdf", data)])


def test_pdf_problems_inside_a_walk_are_skips(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    write(repo, "good.pdf", make_pdf([["good"]]))
    write(repo, "broken.pdf", b"%PDF-1.4\ngarbage")
    write(repo, "secret.pdf", make_pdf([["x"]], password="pw"))
    result = ingest([str(repo)])
    assert [d.path for d in result.documents] == [f"{repo}/good.pdf"]
    reasons = {s.path.rsplit("/", 1)[1]: s.reason for s in result.skipped}
    assert reasons["broken.pdf"].startswith("malformed PDF")
    assert reasons["secret.pdf"] == "encrypted PDF (password needed)"


def test_pdf_on_stdin(tmp_path):
    import io

    result = ingest(["-"], stdin=io.BytesIO(make_pdf([["piped pdf"]])))
    assert result.documents[0].kind == "pdf" and result.documents[0].path == "<stdin>"
    assert "[page 1]\npiped pdf" in result.documents[0].text
