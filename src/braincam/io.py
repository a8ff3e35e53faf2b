"""Small I/O helpers shared by every step: atomic writes and JSON with stable formatting."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any


def _umask() -> int:
    """The process umask (read by setting and restoring it; there is no getter)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    A crash or an exception leaves no half-written file under the final name, so a later run
    never mistakes a partial output for a finished one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the suffixes (e.g. ".nii.gz") so libraries that infer the format from the name work.
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates files readable by the owner only; give them the usual umask mode
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_atomic(path: str | Path, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def to_jsonable(data: Any, where: str = "$") -> Any:
    """``data`` with numpy scalars/arrays made Python values and NaN/inf made ``None``.

    Anything else that JSON cannot hold raises ``TypeError`` naming its place (``$.a.b[2]``):
    a value is never turned into its string, which once stored the verdict ``False`` as the
    truthy string ``"False"``.
    """
    if isinstance(data, bool | str) or data is None:
        return data
    if isinstance(data, int):
        return int(data)
    if isinstance(data, float):
        return float(data) if math.isfinite(data) else None
    if isinstance(data, Mapping):
        out = {}
        for key, value in data.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: JSON keys must be strings, got {key!r}")
            out[key] = to_jsonable(value, f"{where}.{key}")
        return out
    if isinstance(data, list | tuple):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(data)]
    if isinstance(data, PurePath):  # a path is text in JSON; said here, not by a fallback
        return str(data)
    import numpy as np  # only when a non-builtin value shows up

    if isinstance(data, np.bool_):
        return bool(data)
    if isinstance(data, np.integer):
        return int(data)
    if isinstance(data, np.floating):
        return to_jsonable(float(data), where)
    if isinstance(data, np.ndarray):
        return to_jsonable(data.tolist(), where)
    raise TypeError(f"{where}: {type(data).__name__} is not JSON data ({data!r})")


def dumps_json(data: Any) -> str:
    """Indented, key-sorted JSON of :func:`to_jsonable` data (strict: no NaN, no fallback)."""
    return json.dumps(to_jsonable(data), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented, key-sorted JSON, atomically (byte-stable for equal data)."""
    return write_text_atomic(path, dumps_json(data))


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))
