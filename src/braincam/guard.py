"""Guards for what braincam builds from its input: participant IDs, output paths, output errors.

- :func:`check_participant_id` accepts only BIDS labels (``sub-`` + letters and digits), so an
  ID can never carry a path separator, ``..`` or a space into a file name;
- :func:`inside` is the one check that a path built from input lies inside its root (WORK or
  RUN), used wherever such paths are built;
- :func:`output_error` turns an ``OSError`` met while writing (existing file, read-only file
  system, full disk) into an :class:`~braincam.errors.OutputError` naming the path;
  :func:`ensure_dir` creates an output folder that way.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from braincam.errors import InputError, OutputError

# BIDS: a label is alphanumeric; participant IDs are "sub-<label>".
_LABEL = re.compile(r"[A-Za-z0-9]+")
_WHY = {
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EEXIST: "a file is in the way",
    errno.ENOTDIR: "a file is in the way (not a folder)",
    errno.EISDIR: "a folder is in the way",
}

# errno values that mean "the output cannot be written", whatever the file.
OUTPUT_ERRNOS = frozenset(
    {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EEXIST, errno.ENOTDIR, errno.EISDIR}
)


def is_bids_label(text: str) -> bool:
    """True for a BIDS label: one or more ASCII letters or digits."""
    return _LABEL.fullmatch(text) is not None


def check_participant_id(
    value: object, *, path: str | Path | None = None, row: int | None = None
) -> str:
    """``"01"`` or ``"sub-01"`` → ``"sub-01"``; anything but ``sub-`` + alphanumerics raises.

    ``row`` (1-based data row of a table) and ``path`` locate the value in the error message.
    """
    text = str(value).strip()
    label = text.removeprefix("sub-")
    if not is_bids_label(label):
        where = f" (row {row})" if row is not None else ""
        raise InputError(
            f"participant_id{where} is not a BIDS label: expected 'sub-' followed by letters "
            "and digits only",
            path=path,
            value=str(value),
        )
    return f"sub-{label}"


def inside(root: str | Path, path: str | Path) -> Path:
    """Return ``path`` after checking it lies inside ``root`` (both resolved; symlinks followed).

    Every output path built from input (participant IDs, method names) goes through here, so
    a hostile value can never make braincam write outside WORK or RUN.
    """
    root_r = Path(os.path.realpath(root))
    path_r = Path(os.path.realpath(path))
    if path_r != root_r and root_r not in path_r.parents:
        raise InputError("output path would lie outside its folder", path=root, value=str(path))
    return Path(path)


def output_error(exc: OSError, path: str | Path | None = None) -> OutputError:
    """An :class:`OutputError` for ``exc`` met while writing ``path`` (or ``exc.filename``)."""
    where = path if path is not None else exc.filename
    why = _WHY.get(exc.errno or -1, exc.strerror or type(exc).__name__)
    if exc.filename is not None and path is not None and str(exc.filename) != str(path):
        why = f"{why} ({exc.filename})"
    return OutputError(f"cannot write output: {why}", path=where)


def ensure_dir(path: str | Path) -> Path:
    """Create the output folder ``path`` (and parents); an OSError becomes an OutputError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError("cannot write output: a file is in the way (not a folder)", path=path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, path) from None
    return path


def load_refusal(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in braincam's words.

    Never PyTorch's own advice to retry with ``weights_only=False``: a file that needs it can
    run code when loaded, and braincam never writes one.
    """
    import pickle

    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in text:
        return "it holds objects other than tensors and plain data (unsafe to load)"
    if isinstance(exc, EOFError) or "central directory" in text or "zip archive" in text:
        return "the file is truncated or not a PyTorch file"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}"[:200]
