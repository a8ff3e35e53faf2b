"""Atomic writing and JSON conversion (``braincam.io``): what a crash leaves behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from braincam.io import (
    atomic_path,
    dumps_json,
    read_json,
    to_jsonable,
    write_atomic,
    write_bytes_atomic,
    write_json,
    write_text_atomic,
)


class Boom(RuntimeError):
    pass


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_writer_failing_mid_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    target = tmp_path / "table.tsv"
    target.write_text("old\n")

    def half_writer(tmp: Path) -> None:
        assert tmp != target and tmp.parent == target.parent
        tmp.write_text("new but only ha")  # the first half of the new content ...
        assert target.read_text() == "old\n"  # ... never reaches the final name
        raise Boom("disk full")

    with pytest.raises(Boom):
        write_atomic(target, half_writer)
    assert target.read_text() == "old\n"
    assert _files(tmp_path) == ["table.tsv"]


def test_a_failure_before_the_first_write_creates_nothing(tmp_path) -> None:
    target = tmp_path / "sub" / "new.json"
    with pytest.raises(Boom), atomic_path(target):
        raise Boom
    assert not target.exists()
    assert _files(tmp_path / "sub") == []  # the parent was made, and nothing left in it


def test_success_replaces_the_content_and_leaves_no_temporary(tmp_path) -> None:
    target = tmp_path / "deep" / "er" / "a.txt"
    assert write_text_atomic(target, "first") == target
    assert write_text_atomic(target, "second") == target
    assert target.read_text() == "second"
    assert write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01") == tmp_path / "b.bin"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert _files(target.parent) == ["a.txt"]
    assert _files(tmp_path) == ["b.bin", "deep"]


def test_the_temporary_is_hidden_next_to_the_target_and_keeps_every_suffix(tmp_path) -> None:
    target = tmp_path / "sub-01_fa.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".sub-01_fa.nii.gz.")
        assert tmp.name.endswith(".tmp.nii.gz")
        assert tmp.exists() and not target.exists()
        tmp.write_bytes(b"x")
    assert target.read_bytes() == b"x"
    assert _files(tmp_path) == ["sub-01_fa.nii.gz"]


def test_a_writer_that_removes_its_temporary_is_reported_not_hidden(tmp_path) -> None:
    target = tmp_path / "a.txt"
    with pytest.raises(FileNotFoundError), atomic_path(target) as tmp:
        tmp.unlink()
    assert _files(tmp_path) == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path, umask: int) -> None:
    old = os.umask(umask)
    try:
        path = write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert os.umask(old) == old  # reading the umask restored it


def test_to_jsonable_converts_numpy_values_faithfully() -> None:
    data = {
        "flag": np.bool_(False),
        "true": np.bool_(True),
        "n": np.int64(-3),
        "x": np.float32(0.5),
        "bad": np.float64("nan"),
        "inf": float("-inf"),
        "arr": np.array([[1, 2], [3, 4]], dtype=np.int16),
        "farr": np.array([1.5, np.inf]),
        "t": (1, "a", None, True),
        "p": Path("a") / "b.txt",
    }
    out = to_jsonable(data)
    assert out == {
        "flag": False,
        "true": True,
        "n": -3,
        "x": 0.5,
        "bad": None,
        "inf": None,
        "arr": [[1, 2], [3, 4]],
        "farr": [1.5, None],
        "t": [1, "a", None, True],
        "p": "a/b.txt",
    }
    assert type(out["flag"]) is bool and type(out["true"]) is bool
    assert type(out["n"]) is int and type(out["x"]) is float
    assert type(out["arr"][0][0]) is int
    assert to_jsonable(True) is True and to_jsonable(7) == 7 and type(to_jsonable(7)) is int
    assert to_jsonable(2.5) == 2.5 and to_jsonable(float("inf")) is None


def test_to_jsonable_names_the_place_of_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError, match=r"^\$\.a\[1\]: object is not JSON data"):
        to_jsonable({"a": [1, object()]})
    with pytest.raises(TypeError, match=r"^\$\.a: JSON keys must be strings, got 3"):
        to_jsonable({"a": {3: "x"}})
    with pytest.raises(TypeError, match=r"^\$: set is not JSON data"):
        to_jsonable({1, 2})
    # inside an array too: the place is the array's, then the element's
    with pytest.raises(TypeError, match=r"^\$\.m\[1\]: object is not JSON data"):
        to_jsonable({"m": np.array([1, object()], dtype=object)})


def test_json_is_indented_key_sorted_strict_and_byte_stable(tmp_path) -> None:
    text = dumps_json({"b": 1, "a": [np.float64(1.0), float("nan")]})
    assert text == '{\n  "a": [\n    1.0,\n    null\n  ],\n  "b": 1\n}\n'
    first = write_json(tmp_path / "s.json", {"b": 1, "a": {"y": 2, "x": 1}})
    once = first.read_bytes()
    write_json(first, {"a": {"x": 1, "y": 2}, "b": 1})
    assert first.read_bytes() == once
    assert read_json(first) == {"a": {"x": 1, "y": 2}, "b": 1}
    assert json.loads(once) == read_json(first)
