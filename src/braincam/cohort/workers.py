"""Worker processes that never outlive the braincam process that started them.

joblib's loky workers are separate processes; when their parent is killed (SIGKILL, SIGTERM,
Ctrl-C) they are re-parented to init and would go on writing into WORK, racing with a re-run.
:func:`parallel` gives every worker :func:`watch_parent` as its initializer: on Linux the kernel
sends SIGKILL when the parent dies (``prctl(PR_SET_PDEATHSIG)``), and everywhere a daemon thread
checks ``os.getppid()`` a few times a second and ends the process when the parent is gone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from typing import Any

# How often the watchdog thread looks at the parent (seconds).
POLL_SECONDS = 0.2
_PR_SET_PDEATHSIG = 1
_watching: int | None = None


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _set_pdeathsig() -> None:
    """Linux: ask the kernel to SIGKILL this process when its parent exits (best effort)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no libc/prctl: the polling thread still works
        pass


def _poll(parent_pid: int, stop: threading.Event) -> None:
    while not stop.wait(POLL_SECONDS):
        if os.getppid() != parent_pid:
            _die()


def watch_parent(parent_pid: int) -> None:
    """End this process as soon as ``parent_pid`` is no longer its parent (idempotent).

    A no-op in the parent itself, so it is safe to call from code that may run in-process.
    """
    global _watching
    if os.getpid() == parent_pid or _watching == parent_pid:
        return
    if os.getppid() != parent_pid:  # the parent died before this worker started
        _die()
    _set_pdeathsig()
    if os.getppid() != parent_pid:  # died between the check and prctl
        _die()
    _watching = parent_pid
    threading.Thread(
        target=_poll,
        args=(parent_pid, threading.Event()),
        name="braincam-parent-watch",
        daemon=True,
    ).start()


def parallel(n_jobs: int, **kwargs: Any) -> Any:
    """A ``joblib.Parallel`` on loky processes that die with this process."""
    from joblib import Parallel
    from joblib._parallel_backends import LokyBackend

    backend = LokyBackend(initializer=watch_parent, initargs=(os.getpid(),))
    return Parallel(n_jobs=n_jobs, backend=backend, **kwargs)
