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
