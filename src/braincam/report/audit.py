"""Check a rendered report against the data it shows: every keyed value vs ``summary.json``.

The report marks each verdict and headline figure it prints with the path of that value in
``summary.json`` (``data-key``). :func:`audit_report` reads the *visible text* of every marked
element and compares it with the value at that path, with its own reading of the text (words for
booleans, decimals for numbers) — so a report that prints "FLAGGED" for a method whose data say
it passes, or a figure that is not the stored one, is caught. It also checks that every verdict
and every lesion hit rate of the data (:func:`required_keys`) appears in the report.
"""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser
from typing import Any

from braincam.summary_schema import VERDICT_CHECKS

#: words the report uses for booleans, per key suffix (default: yes / no)
_WORDS = {"flagged": {"FLAGGED": True, "passes": False}}
_DEFAULT_WORDS = {"yes": True, "no": False}
_MISSING = {"–", "n/a"}


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []
        self._stack: list[tuple[str, list[str]] | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        key = dict(attrs).get("data-key")
        self._stack.append((key, []) if key else None)

    def handle_endtag(self, tag: str) -> None:
        if self._stack:
            item = self._stack.pop()
            if item is not None:
                self.found.append((item[0], "".join(item[1]).strip()))

    def handle_data(self, data: str) -> None:
        for item in self._stack:
            if item is not None:
                item[1].append(data)


def keyed_values(html: str) -> list[tuple[str, str]]:
    """``(summary path, visible text)`` of every element of the report marked with data-key."""
    parser = _Collector()
    parser.feed(html)
    return parser.found


def _lookup(summary: Any, key: str) -> Any:
    node = summary
    for part in key.split("/"):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(key)
    return node


def _matches(value: Any, text: str, key: str) -> bool:
    if value is None:
        return text in _MISSING
    if isinstance(value, bool):
        words = _WORDS.get(key.rsplit("/", 1)[-1], _DEFAULT_WORDS)
        return text in words and words[text] is value
    if isinstance(value, int | float):
        if text in _MISSING:
            return isinstance(value, float) and math.isnan(value)
        try:
            shown = float(text)
        except ValueError:
            return False
        decimals = len(text.split(".", 1)[1]) if "." in text else 0
        return abs(shown - value) <= 0.5 * 10**-decimals + 1e-12
    return str(value) == text


def required_keys(summary: dict[str, Any]) -> list[str]:
    """The values the report must show: every family's verdict of every method, the sanity
    flags, the perturbation controls and every lesion hit rate (with its counts) of every
    evaluated run."""
    keys = []
    for run, ev in (summary.get("cam_evaluation") or {}).items():
        skipped = set(ev.get("skipped") or [])
        for method, families in (ev.get("verdicts") or {}).items():
            for family in families:
                if VERDICT_CHECKS.get(family) in skipped:  # shown as "not run", no figure
                    continue
                base = f"cam_evaluation/{run}/verdicts/{method}/{family}"
                keys += [f"{base}/verdict", f"{base}/figure", f"{base}/baseline"]
        if ev.get("shortcut"):
            keys.append(f"cam_evaluation/{run}/shortcut/alarm")
        for method in ev.get("sanity") or {}:
            keys.append(f"cam_evaluation/{run}/sanity/{method}/flagged")
        for level, methods in ((ev.get("lesion_hits") or {}).get("levels") or {}).items():
            for method, bins in methods.items():
                for name in bins:
                    base = f"cam_evaluation/{run}/lesion_hits/levels/{level}/{method}/{name}"
                    keys += [f"{base}/hit_rate", f"{base}/n_hit", f"{base}/n_lesions"]
        if ev.get("perturbation"):
            keys += [
                f"cam_evaluation/{run}/perturbation/positive_control",
                f"cam_evaluation/{run}/perturbation/negative_control",
            ]
    return keys


def audit_report(html: str, summary: dict[str, Any]) -> list[str]:
    """Every disagreement between the report and ``summary`` (empty when they agree)."""
    problems = []
    shown = keyed_values(html)
    for key, text in shown:
        try:
            value = _lookup(summary, key)
        except KeyError:
            problems.append(f"{key}: shown as {text!r} but absent from summary.json")
            continue
        if not _matches(value, text, key):
            problems.append(f"{key}: report shows {text!r}, summary.json holds {value!r}")
    present = {key for key, _ in shown}
    problems += [
        f"{key}: in summary.json, not in the report"
        for key in required_keys(summary)
        if key not in present
    ]
    return problems


#: (tag, attribute) pairs through which a page fetches something when it is opened
_FETCHING = {
    ("script", "src"),
    ("link", "href"),
    ("img", "src"),
    ("iframe", "src"),
    ("source", "src"),
    ("embed", "src"),
    ("object", "data"),
    ("video", "src"),
    ("audio", "src"),
}
_REMOTE = ("http://", "https://", "//")
_CSS_URL = re.compile(r"(?:url\(\s*['\"]?|@import\s+['\"])\s*((?:https?:)?//[^'\")\s]+)", re.I)


class _Resources(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.remote: list[str] = []
        self.documents: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name, value in values.items():
            if value is None:
                continue
            if (tag, name) in _FETCHING and value.strip().lower().startswith(_REMOTE):
                self.remote.append(value.strip())
            if name == "style":
                self.remote += _CSS_URL.findall(value)
        if tag == "iframe" and values.get("srcdoc"):
            self.documents.append(values["srcdoc"] or "")
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.remote += _CSS_URL.findall(data)


def viewer_documents(html: str) -> list[str]:
    """The documents embedded in the page's ``<iframe srcdoc>`` elements (the 3D viewers),
    unescaped, in page order."""
    parser = _Resources()
    parser.feed(html)
    return parser.documents


def remote_resources(html: str) -> list[str]:
    """Every remote URL (http, https, protocol-relative) the page or one of its embedded
    documents would fetch when opened: scripts, stylesheets, icons, images, frames, CSS
    ``url()``/``@import``. Links a reader may click (``<a href>``) are not fetched and not
    listed. An offline report has none."""
    parser = _Resources()
    parser.feed(html)
    found = list(parser.remote)
    for document in parser.documents:
        found += remote_resources(document)
    return found
