"""Domain errors: every bad input names the subject, the file and the value received.

The CLI catches :class:`BraincamError` and prints the message (no traceback) with a non-zero exit.
"""

from __future__ import annotations

from pathlib import Path


class BraincamError(Exception):
    """Base of all braincam errors raised on bad user input or configuration."""


class InputError(BraincamError, ValueError):
    """Bad input data (a file, a table, a value) with its location.

    Parameters name where the problem is, so the message can say it: ``subject``, ``path`` and
    ``value`` are optional and appended to ``message`` when given.
    """

    def __init__(
        self,
        message: str,
        *,
        subject: str | None = None,
        path: str | Path | None = None,
        value: object = None,
    ) -> None:
        self.message = message
        self.subject = subject
        self.path = None if path is None else str(path)
        self.value = value
        parts = [message]
        if subject is not None:
            parts.append(f"subject={subject}")
        if path is not None:
            parts.append(f"file={path}")
        if value is not None:
            parts.append(f"value={value!r}")
        super().__init__("; ".join(parts))


class ConfigError(BraincamError, ValueError):
    """Bad configuration: an unknown key or a value out of range, with the key's path."""


class ModelError(BraincamError, ValueError):
    """Unknown model name, bad layer, weights that do not match an architecture."""


class OutputError(BraincamError, OSError):
    """An output could not be written (existing file in the way, read-only or full disk).

    Raised instead of the bare ``OSError`` so the CLI prints one message naming the path
    (exit 2). ``path`` is the file or folder braincam tried to write.
    """

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        text = message if path is None else f"{message}; file={path}"
        super().__init__(text)

    def __reduce__(self) -> tuple:
        # Worker processes send errors back pickled; keep the full message and the path.
        return (_rebuild_output_error, (str(self), self.path))

    def __str__(self) -> str:
        return self.args[0] if self.args else ""


def _rebuild_output_error(text: str, path: str | None) -> OutputError:
    err = OutputError(text)
    err.path = path
    return err
