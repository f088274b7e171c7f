import json
import math
import os

import pytest

from tfcraft._io import write_json_atomic, write_text_atomic


def test_write_text_atomic_writes_the_file_and_its_folders(tmp_path):
    path = tmp_path / "new" / "folder" / "report.md"
    write_text_atomic(path, "a,b\r\n1,2\n")
    assert path.read_bytes() == b"a,b\r\n1,2\n"  # UTF-8, newlines written as given
    assert [p.name for p in path.parent.iterdir()] == ["report.md"]


def test_write_text_atomic_replaces_an_existing_file(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("a much longer old content\n" * 10)
    write_text_atomic(path, "new\n")
    assert path.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]


def test_write_text_atomic_accepts_str_paths_and_unicode(tmp_path):
    write_text_atomic(str(tmp_path / "u.txt"), "µ = 0.5 ✓")
    assert (tmp_path / "u.txt").read_text(encoding="utf-8") == "µ = 0.5 ✓"


def test_write_json_atomic_is_indented_and_sorted(tmp_path):
    path = tmp_path / "meta.json"
    write_json_atomic(path, {"b": [1, 2], "a": {"d": 1, "c": 2}})
    assert path.read_text() == json.dumps(
        {"a": {"c": 2, "d": 1}, "b": [1, 2]}, indent=2, sort_keys=True
    )


def test_write_json_atomic_allows_nan_by_default(tmp_path):
    path = tmp_path / "state.json"
    write_json_atomic(path, {"best": math.inf, "last": math.nan})
    restored = json.loads(path.read_text())
    assert restored["best"] == math.inf and math.isnan(restored["last"])


def test_failed_replace_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "log.jsonl"
    write_text_atomic(path, "old\n")

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["log.jsonl"]


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "meta.json"
    write_json_atomic(path, {"x": 1})

    def crash(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(os, "fsync", crash)  # after the temp file holds the data
    with pytest.raises(OSError, match="I/O error"):
        write_json_atomic(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_unserialisable_payload_leaves_the_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "meta.json"
    write_json_atomic(path, {"x": 1})
    with pytest.raises(ValueError, match="Out of range float"):
        write_json_atomic(path, {"x": math.nan}, allow_nan=False)

    def crash(*args, **kwargs):
        raise TypeError("not serialisable")

    monkeypatch.setattr(json, "dumps", crash)
    with pytest.raises(TypeError, match="not serialisable"):
        write_json_atomic(path, {"x": 3})
    assert json.loads(path.read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]
