"""Reading named files and stdin: encodings, binaries, secrets, empty input, rendering."""

from __future__ import annotations

import io

import pytest

from starcli.ingest import Document, InputError, ingest, render_documents


def test_plain_file_keeps_the_path_as_given(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("The launch code is 4817.\n")
    result = ingest([str(path)])
    [doc] = result.documents
    assert (doc.path, doc.kind, doc.text) == (str(path), "text", "The launch code is 4817.\n")
    assert 5 <= doc.tokens <= 12
    assert result.total_tokens == doc.tokens and result.skipped == [] and result.warnings == []


def test_invalid_utf8_falls_back_with_a_warning(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("café crème, déjà vu\n".encode("cp1252"))
    result = ingest([str(path)])
    assert result.documents[0].text == "café crème, déjà vu\n"
    assert result.warnings == [f"{path}: not valid UTF-8, decoded as Windows-1252"]


def test_mostly_utf8_with_a_bad_byte_keeps_utf8(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_bytes("naïve ünïcödé text ".encode() * 20 + b"\xff end\n")
    result = ingest([str(path)])
    assert "naïve ünïcödé" in result.documents[0].text and "\ufffd end" in result.documents[0].text
    assert result.warnings == [f"{path}: not valid UTF-8 (1 bad bytes replaced)"]


def test_windows_line_endings_become_newlines(tmp_path):
    (tmp_path / "dos.txt").write_bytes(b"one\r\ntwo\r\n")
    assert ingest([str(tmp_path / "dos.txt")]).documents[0].text == "one\ntwo\n"


def test_utf16_with_bom_is_text(tmp_path):
    path = tmp_path / "utf16.txt"
    path.write_bytes("hello from UTF-16\n".encode("utf-16"))
    assert ingest([str(path)]).documents[0].text == "hello from UTF-16\n"


def test_nul_bytes_and_binaries_are_skipped(tmp_path):
    (tmp_path / "nul.txt").write_bytes(b"text with a NUL\x00 in it\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (tmp_path / "controls.dat").write_bytes(bytes([1, 2, 3, 4, 5, 0x7F, 65]) * 100)
    (tmp_path / "ok.txt").write_text("fine\n")
    result = ingest([str(tmp_path)])
    assert [d.path for d in result.documents] == [f"{tmp_path}/ok.txt"]
    assert {s.path.rsplit("/", 1)[1]: s.reason for s in result.skipped} == {
        "controls.dat": "binary file",
        "image.png": "binary file",
        "nul.txt": "binary file",
    }


def test_huge_single_line_is_read_and_estimated(tmp_path):
    path = tmp_path / "minified.js"
    path.write_text("var a=1;" * 100_000)  # 800 KB, one line
    [doc] = ingest([str(path)]).documents
    assert len(doc.text) == 800_000 and doc.tokens > 100_000


def test_named_file_has_no_size_cap_but_a_walk_does(tmp_path):
    (tmp_path / "big.txt").write_text("word " * 1000)
    assert ingest([str(tmp_path / "big.txt")], max_file_bytes=100).documents
    with pytest.raises(InputError, match="cap"):
        ingest([str(tmp_path)], max_file_bytes=100)


def test_named_secret_is_still_skipped(tmp_path):
    key = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\n" + "MIIEowIBAAKCAQEA1x2y3z" * 4
    (tmp_path / "key.txt").write_text(key + "\n-----END RSA PRIVATE KEY-----\n")
    with pytest.raises(InputError, match=r"holds a secret \(Private Key on line 1\)"):
        ingest([str(tmp_path / "key.txt")])


def test_a_named_env_file_is_refused_and_a_walk_skips_it(tmp_path):
    (tmp_path / ".env").write_text("DATABASE_HOST=db.internal\n")
    with pytest.raises(
        InputError, match=r"\.env: not read: its name marks a secret file \(environment file\)"
    ):
        ingest([str(tmp_path / ".env")])
    with pytest.raises(InputError, match="secret: environment file"):
        ingest([str(tmp_path)])


def test_a_key_header_without_a_key_is_not_a_secret(tmp_path):
    (tmp_path / "docs.md").write_text("PEM files start with -----BEGIN PRIVATE KEY----- and a body.\n")
    assert ingest([str(tmp_path / "docs.md")]).documents


def test_stdin(tmp_path):
    result = ingest(["-"], stdin=io.BytesIO(b"piped text\n"))
    assert result.documents == [Document("<stdin>", "piped text\n", "stdin", result.documents[0].tokens)]
    twice = ingest(["-", "-"], stdin=io.BytesIO(b"once\n"))
    assert len(twice.documents) == 1 and twice.skipped[0].path == "<stdin>"


def test_empty_and_binary_stdin_are_input_errors():
    with pytest.raises(InputError, match=r"<stdin> \(empty file\)"):
        ingest(["-"], stdin=io.BytesIO(b""))
    with pytest.raises(InputError, match=r"<stdin> \(binary file\)"):
        ingest(["-"], stdin=io.BytesIO(b"\x00\x01\x02"))


def test_missing_path_and_no_sources_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file or directory"):
        ingest([str(tmp_path / "nope.txt")])
    with pytest.raises(InputError, match="nothing to read"):
        ingest([])


def test_empty_input_names_every_skip(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n\n")
    (tmp_path / "blob.bin").write_bytes(b"\x00" * 10)
    with pytest.raises(InputError) as info:
        ingest([str(tmp_path / "empty.txt"), str(tmp_path / "blob.bin")])
    assert str(info.value) == (
        f"no text to read: 2 skipped: {tmp_path}/empty.txt (empty file), {tmp_path}/blob.bin (binary file)"
    )


def test_a_file_named_twice_is_read_once(tmp_path):
    (tmp_path / "a.txt").write_text("a\n")
    result = ingest([str(tmp_path / "a.txt"), str(tmp_path)])
    assert [d.path for d in result.documents] == [f"{tmp_path}/a.txt"]
    assert result.skipped[0].reason == f"duplicate of {tmp_path}/a.txt"


def test_render_documents_puts_a_header_before_each_document():
    docs = [Document("a.py", "x = 1\n", "text", 3), Document("b.md", "no newline", "text", 2)]
    assert render_documents(docs) == "===== a.py =====\nx = 1\n\n===== b.md =====\nno newline\n"
    assert render_documents(docs) == render_documents(list(docs))
    assert render_documents([]) == ""
