"""The HTML report shell: self-contained, escaped, every block kind rendered."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from braincam.report import blocks as B
from braincam.report.render import render_html, write_report


def _sections() -> list[B.Section]:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    evil = '<script>alert("x")</script>'
    s = B.Section("data", "Dataset")
    s.add(B.text(f"subject {evil}"))
    s.add(B.table(pd.DataFrame({"subject": [evil], "acc": [0.91234]}), title="T"))
    s.add(B.figure_from_matplotlib(fig, title="curve", caption="a line"))
    s.add(B.viewer('<html><body><p class="x">3D "view"</p></body></html>', title="3D"))
    s.add(B.preformatted("a: 1\nb: <2>"))
    s.add(B.note("read against the baseline"))
    return [s]


def test_user_strings_are_escaped_and_no_external_resources() -> None:
    html = render_html(_sections(), title="braincam <report>")
    assert '<script>alert("x")</script>' not in html
    assert "&lt;script&gt;" in html
    assert "braincam &lt;report&gt;" in html
    # self-contained: figures inline, nothing fetched from elsewhere
    assert "data:image/png;base64," in html
    assert "http://" not in html and "https://" not in html
    # the viewer document is kept inside the srcdoc attribute, escaped
    assert 'srcdoc="&lt;html&gt;' in html
    assert "0.912" in html and "0.91234" not in html


def test_write_report_atomic(tmp_path) -> None:
    out = write_report(tmp_path / "r.html", _sections(), title="t")
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
