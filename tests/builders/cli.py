"""Run ``braincam ARGS`` through the console-script entry point in-process (exit code, output,
and any exception that would have been a traceback)."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass

import pytest

from braincam.cli import main


@dataclass
class CliResult:
    code: int
    out: str
    err: str
    exc: BaseException | None = None  # anything but SystemExit escaping main(): a traceback

    @property
    def text(self) -> str:
        return self.out + self.err


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> CliResult:
    """``braincam ARGS`` through the console-script entry point, in this process."""
    old_argv, old_term = sys.argv, signal.getsignal(signal.SIGTERM)
    old_columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "10000"  # Rich wraps at the terminal width: keep messages whole
    sys.argv = ["braincam", *args]
    code, exc = 0, None
    try:
        main()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException as error:
        code, exc = -1, error
    finally:
        sys.argv = old_argv
        signal.signal(signal.SIGTERM, old_term)
        if old_columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old_columns
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err, exc)
