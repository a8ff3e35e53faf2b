"""A stop request (SIGTERM, Ctrl-C) ends a command once, without a traceback from the teardown.

Each case runs in a fresh interpreter: the hooks are process-wide.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def _run(body: str, *, install: bool) -> subprocess.CompletedProcess[str]:
    setup = "from braincam.cli import _signals\n" + ("_signals.install()\n" if install else "")
    code = setup + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )


# The interrupt is raised inside a finalizer (as when SIGTERM lands during a __del__): Python
# reports it as unraisable and drops it; the main thread then waits up to 20 s.
_SWALLOWED = """
import time
class Finalized:
    def __del__(self):
        raise KeyboardInterrupt("signal 15")
obj = Finalized()
del obj
try:
    for _ in range(200):
        time.sleep(0.1)
    print("ran on")
except KeyboardInterrupt:
    print("stopped")
"""


def test_an_interrupt_swallowed_by_a_finalizer_still_stops_the_command() -> None:
    proc = _run(_SWALLOWED, install=True)
    assert proc.stdout.strip() == "stopped"
    assert "Traceback" not in proc.stderr


def test_without_the_hooks_a_swallowed_interrupt_is_lost() -> None:
    """Control: the case above does lose the stop (and print a traceback) with Python's
    defaults, so the test above can fail."""
    proc = _run(_SWALLOWED, install=False)
    assert proc.stdout.strip() == "ran on"
    assert "Traceback" in proc.stderr


_THREAD_ERROR = """
import threading
def boom():
    raise RuntimeError("queue torn down")
t = threading.Thread(target=boom); t.start(); t.join()
print("---", flush=True)
import sys; sys.stderr.write("---\\n"); sys.stderr.flush()
{stop}
t = threading.Thread(target=boom); t.start(); t.join()
import logging
logging.getLogger("concurrent.futures").error("exception calling callback for <Future>")
"""


@pytest.mark.parametrize("stop", [True, False], ids=["after-stop", "no-stop"])
def test_teardown_errors_are_quiet_only_after_a_stop(stop: bool) -> None:
    body = _THREAD_ERROR.format(stop="_signals.mark_stopping()" if stop else "")
    proc = _run(body, install=True)
    before, after = proc.stderr.split("---\n")
    assert "RuntimeError: queue torn down" in before  # before a stop, errors are shown
    if stop:
        assert after == ""
    else:
        assert "RuntimeError: queue torn down" in after
        assert "exception calling callback" in after


def test_sigterm_handler_marks_the_stop_and_unwinds() -> None:
    proc = _run(
        """
        import os, signal
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            import time; time.sleep(5)
            print("ran on")
        except KeyboardInterrupt as exc:
            print(_signals.stop_requested(), exc)
        """,
        install=True,
    )
    assert proc.stdout.strip() == "True signal 15"
