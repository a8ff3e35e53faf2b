"""How a stop request (SIGTERM, Ctrl-C) ends a command: one ``KeyboardInterrupt`` in the main
thread, `finally` blocks run, and no traceback from the teardown reaches the user.

Two races make a plain handler print tracebacks now and then on a loaded machine:

- the interrupt lands inside a ``__del__`` or a weakref callback, where Python reports it as
  "Exception ignored in ..." and *drops* it, so the command would go on running;
- background threads tearing down with the main thread (joblib/loky's callback and queue
  threads racing with the abort of the worker pool) die with errors of their own.

:func:`install` handles both: a dropped interrupt is re-delivered to the main thread, and thread
errors and ``concurrent.futures`` callback logs after a stop was requested are not shown (the
user asked to stop; what broke is the pool being torn down).
"""

from __future__ import annotations

import _thread
import logging
import signal
import sys
import threading
from typing import Any

# Delay before a swallowed interrupt is delivered again (seconds; see ``_unraisable``).
REDELIVER_AFTER_S = 0.05


class _Stop:
    """Whether a stop was requested in this process (signal handlers are process-wide)."""

    requested = threading.Event()


def request_stop(signum: int, frame: object) -> None:
    """Signal handler: mark the stop and unwind the main thread like Ctrl-C."""
    _Stop.requested.set()
    raise KeyboardInterrupt(f"signal {signum}")


def stop_requested() -> bool:
    """True once SIGTERM or Ctrl-C reached this process (or :func:`mark_stopping` was called)."""
    return _Stop.requested.is_set()


def mark_stopping() -> None:
    """Record a stop that arrived by another route (a ``KeyboardInterrupt`` we did not raise)."""
    _Stop.requested.set()


def _unraisable(previous: Any) -> Any:
    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            # The interrupt was raised inside a finalizer and swallowed: deliver it again, from
            # a timer so that it lands after this hook has returned (a signal handler runs at
            # the main thread's next bytecode, which would still be inside the hook).
            _Stop.requested.set()
            timer = threading.Timer(REDELIVER_AFTER_S, _thread.interrupt_main, (signal.SIGINT,))
            timer.daemon = True
            timer.start()
            return
        if _Stop.requested.is_set():
            return
        previous(unraisable)

    return hook


def _thread_errors(previous: Any) -> Any:
    def hook(args: Any) -> None:
        if _Stop.requested.is_set():
            return
        previous(args)

    return hook


class _AfterStop(logging.Filter):
    """Drop log records once a stop was requested."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _Stop.requested.is_set()


def install() -> None:
    """Route SIGTERM and SIGINT through :func:`request_stop` and quiet the teardown (see the
    module docstring). Outside the main thread (embedded use) the signal handlers are left."""
    try:
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
    except ValueError:  # not the main thread
        return
    sys.unraisablehook = _unraisable(sys.unraisablehook)
    threading.excepthook = _thread_errors(threading.excepthook)
    futures_log = logging.getLogger("concurrent.futures")
    if not any(isinstance(f, _AfterStop) for f in futures_log.filters):
        futures_log.addFilter(_AfterStop())
