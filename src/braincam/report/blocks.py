"""Report building blocks: tables, figures, text and embedded viewers, rendered by one template.

A report is a list of :class:`Section`; each holds blocks. Everything user-supplied (subject IDs,
labels, config strings) goes through Jinja2's autoescaping; only the embedded 3D viewer is HTML of
our own making, and it is isolated in an ``<iframe srcdoc>`` (escaped as an attribute value).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from braincam.figures import figure_png_bytes

BlockKind = Literal["text", "table", "figure", "viewer", "note", "pre", "keyed", "keyed_table"]

#: A piece of text and, when it shows a value of summary.json, that value's path
#: ("cam_evaluation/<run>/verdicts/<method>/faithful/verdict"), written as ``data-key`` so a
#: test can check every shown verdict and figure against the data (report/audit.py).
Span = tuple[str, str]


@dataclass
class Block:
    """One item of a section; ``kind`` selects how the template renders it."""

    kind: BlockKind
    title: str = ""
    text: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    src: str = ""  # data URI for figures
    html: str = ""  # viewer document (rendered inside an iframe's srcdoc)
    spans: list[Span] = field(default_factory=list)  # keyed paragraph
    cells: list[list[list[Span]]] = field(default_factory=list)  # keyed table: rows of cells
    collapsed: bool = False  # long tables: inside <details>, closed by default


@dataclass
class Section:
    """A titled part of the report with an anchor id for the table of contents."""

    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, block: Block) -> Section:
        self.blocks.append(block)
        return self


def text(body: str, title: str = "") -> Block:
    """A paragraph of plain text (escaped)."""
    return Block("text", title=title, text=body)


def note(body: str) -> Block:
    """A highlighted remark, e.g. how to read a figure against its baseline."""
    return Block("note", text=body)


def preformatted(body: str, title: str = "") -> Block:
    """Monospaced text such as a config file or a command line (escaped)."""
    return Block("pre", title=title, text=body)


def _format_cell(value: Any, digits: int) -> Any:
    if isinstance(value, float):
        return "–" if value != value else f"{value:.{digits}f}"  # NaN → dash
    return value


def table(df: pd.DataFrame, title: str = "", digits: int = 3, collapsed: bool = False) -> Block:
    """A table from a DataFrame (index dropped; floats rounded for reading).

    ``collapsed`` puts it in a closed ``<details>`` element (long tables: the figures that matter
    are in the verdict table and the plots).
    """
    rows = [[_format_cell(v, digits) for v in row] for row in df.itertuples(index=False)]
    return Block(
        "table", title=title, columns=[str(c) for c in df.columns], rows=rows, collapsed=collapsed
    )


def fmt_value(value: Any, digits: int = 3, vocabulary: tuple[str, str] = ("yes", "no")) -> str:
    """How the report writes a value of summary.json: booleans as words, numbers rounded."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return vocabulary[0] if value else vocabulary[1]
    if isinstance(value, float):
        return "–" if value != value else f"{value:.{digits}f}"
    return str(value)


def keyed(spans: list[Span], title: str = "") -> Block:
    """A paragraph whose values carry their summary.json path (see :data:`Span`)."""
    return Block("keyed", title=title, spans=spans)


def keyed_table(columns: list[str], cells: list[list[list[Span]]], title: str = "") -> Block:
    """A table whose cells are keyed spans (the verdict table)."""
    return Block("keyed_table", title=title, columns=columns, cells=cells)


def read_tsv(path: Path) -> pd.DataFrame | None:
    """A TSV table, or None when the file does not exist (that part of the report is missing)."""
    return pd.read_csv(path, sep="\t") if path.is_file() else None


def plt() -> Any:
    """matplotlib.pyplot with the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def png_data_uri(png: bytes) -> str:
    """Encode PNG bytes as a data URI so the report needs no side files."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_from_matplotlib(fig: Any, title: str = "", caption: str = "", dpi: int = 100) -> Block:
    """Render a matplotlib figure to an inline PNG block and close it."""
    return Block("figure", title=title, text=caption, src=png_data_uri(figure_png_bytes(fig, dpi)))


def figure_from_file(path: str | Path, title: str = "", caption: str = "") -> Block:
    """Inline an existing PNG file."""
    return Block("figure", title=title, text=caption, src=png_data_uri(Path(path).read_bytes()))


def viewer(html_document: str, title: str = "", caption: str = "") -> Block:
    """Embed a standalone HTML viewer (e.g. nilearn's ``view_img``) in an isolated iframe."""
    return Block("viewer", title=title, text=caption, html=html_document)


def brain_viewer(
    stat_img: Any,
    title: str = "",
    caption: str = "",
    threshold: float | None = None,
    *,
    bg_img: Any = None,
    cut_coords: tuple[float, float, float] | None = None,
) -> Block:
    """An interactive 3D view of ``stat_img`` over ``bg_img`` (default: the bundled MNI152
    template), opened at ``cut_coords`` (world mm; default: nilearn's choice).

    nilearn's ``view_img`` inlines its scripts in a standalone document, so the report stays one
    file with no network access needed (its one remote reference, a favicon, is dropped).
    ``threshold`` defaults to 20 % of the image's maximum (the bounding-box rule of the dMRI
    study), so the background shows through low values.
    """
    import numpy as np
    from nilearn import datasets, plotting

    if threshold is None:
        top = float(np.nanmax(np.asarray(stat_img.dataobj)))
        threshold = 0.2 * top if top > 0 else None  # an all-zero map: nothing to threshold
    if bg_img is None:
        bg_img = datasets.load_mni152_template(resolution=2)
    view = plotting.view_img(
        stat_img,
        bg_img=bg_img,
        threshold=threshold,
        cmap="hot",
        symmetric_cmap=False,
        title=title or None,
        cut_coords=cut_coords,
    )
    return viewer(offline_document(view.get_standalone()), title=title, caption=caption)


#: ``<link>`` elements whose ``href`` is a remote URL (nilearn's page links a favicon on GitHub).
_REMOTE_LINK = re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//[^>]*>", re.IGNORECASE)


def offline_document(html: str) -> str:
    """``html`` without ``<link>`` elements to remote URLs (an offline report fetches nothing)."""
    return _REMOTE_LINK.sub("", html)
