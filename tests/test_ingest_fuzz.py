"""Hostile bytes: whatever a file holds, ingestion ends in a Document, a Skipped or an InputError."""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starcli.ingest import Ingested, InputError, ingest
from tests.pdf_factory import make_pdf

PDF = make_pdf([["fuzz seed text"], ["second page"]])


def outcome(sources, stdin=None) -> str:
    try:
        result = ingest(sources, stdin=stdin)
    except InputError as exc:
        assert str(exc)
        return "error"
    assert isinstance(result, Ingested)
    assert len(result.documents) + len(result.skipped) >= 1
    return "document"


fuzz_settings = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@fuzz_settings
@given(data=st.binary(max_size=4096), name=st.sampled_from(["blob.txt", "blob.pdf", ".env", "blob"]))
def test_random_bytes_as_a_file(tmp_path, data, name):
    path = tmp_path / name
    path.write_bytes(data)
    outcome([str(path)])
    outcome([str(tmp_path)])


@fuzz_settings
@given(data=st.binary(max_size=2048))
def test_random_bytes_on_stdin(data):
    outcome(["-"], stdin=io.BytesIO(data))


@fuzz_settings
@given(
    cut=st.integers(min_value=0, max_value=len(PDF)),
    flips=st.lists(st.tuples(st.integers(0, len(PDF) - 1), st.integers(0, 255)), max_size=8),
)
def test_damaged_pdfs(tmp_path, cut, flips):
    data = bytearray(PDF)
    for position, value in flips:
        data[position] = value
    path = tmp_path / "damaged.pdf"
    path.write_bytes(bytes(data[:cut]))
    outcome([str(path)])
