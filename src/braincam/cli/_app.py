"""The Typer application and its error handling; commands live in sibling modules.

Heavy libraries (torch, dipy, nilearn) are imported inside the command functions so that
``braincam --help`` stays instant.
"""

from __future__ import annotations

import logging
import sys
import warnings

import typer
from rich.console import Console
from rich.markup import escape

from braincam.cli import _signals as stop_signals
from braincam.errors import BraincamError
from braincam.guard import OUTPUT_ERRNOS, output_error

app = typer.Typer(
    name="braincam",
    help="Train CNNs on brain MRI, explain them with class activation maps, measure the maps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

err_console = Console(stderr=True)


def _print_error(message: str) -> None:
    """One error line as the user must be able to copy it: the message is not read as rich
    markup (a path may hold brackets) and long lines are not broken (a path cut by a newline
    cannot be pasted)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


# Third-party messages that say nothing about the user's data or run (their own advice,
# deprecations inside their code); braincam's own warnings are never in this list.
THIRD_PARTY_NOISE = (
    (FutureWarning, r".*_register_pytree_node` is deprecated"),
    (FutureWarning, r".*isinstance\(treespec, LeafSpec\)` is deprecated"),
    (UserWarning, r".*'partition' will ignore the 'mask' of the MaskedArray"),
    (UserWarning, r".*'argpartition' will ignore the 'mask' of the MaskedArray"),
)
_LIGHTNING_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


class _DropAdvertisements(logging.Filter):
    """Drop Lightning's product tips ("💡 Tip: ... litlogger ...")."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not ("💡" in text or "litlogger" in text.lower() or "LitLogger" in text)


def quiet_third_party() -> None:
    """Filter the third-party noise listed in ``THIRD_PARTY_NOISE`` and Lightning's tips."""
    for category, pattern in THIRD_PARTY_NOISE:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropAdvertisements) for f in logger.filters):
            logger.addFilter(_DropAdvertisements())


def main() -> None:
    """Console-script entry point: domain errors print a message and exit 2, no traceback.

    An OSError about an output (full or read-only disk, a file in the way) is reported the same
    way; SIGTERM and Ctrl-C stop with exit 130 and no traceback.
    """
    quiet_third_party()
    # SIGTERM unwinds like Ctrl-C: `finally` blocks remove temp files, workers are stopped.
    stop_signals.install()
    try:
        app()
    except BraincamError as exc:
        _print_error(str(exc))
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in OUTPUT_ERRNOS:
            raise
        _print_error(output_error(exc))
        sys.exit(2)
    except KeyboardInterrupt:
        stop_signals.mark_stopping()
        err_console.print("[bold red]interrupted[/]", highlight=False)
        sys.exit(130)


@app.callback()
def _root() -> None:
    """braincam: brain MRI → CNN → class activation maps → are the maps right?"""


def parse_layer(value: str | None) -> str | tuple[str, ...] | None:
    """``--layer``: one name, or several separated by commas (their maps are fused)."""
    if value is None:
        return None
    names = tuple(name.strip() for name in value.split(","))
    return names[0] if len(names) == 1 else names
