"""report.html is one self-contained file: MLflow's artifact viewer shows it alone, so no figure,
style or script may be fetched by a relative path (links to the tables may stay: they are links)."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from urllib.parse import urlparse

import pandas as pd
import pytest

from reports.render import StudyInfo, write_report
from tests.test_report_curves import curves_of
from tests.test_reports import STRENGTH, frame

RESOURCE_ATTRS = {"img": "src", "script": "src", "link": "href", "source": "src", "iframe": "src", "embed": "src",
                  "object": "data", "video": "src", "audio": "src", "input": "src"}


class Resources(HTMLParser):
    """Every resource a page would fetch (``<img src>``, ``<link href>``, ``<script src>``...) and its links."""

    def __init__(self) -> None:
        super().__init__()
        self.fetched: list[tuple[str, str]] = []
        self.links: list[str] = []
        self.styles = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in RESOURCE_ATTRS and values.get(RESOURCE_ATTRS[tag]) is not None:
            self.fetched.append((tag, values[RESOURCE_ATTRS[tag]] or ""))
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")
        if tag == "style":
            self.styles += 1
        if "style" in values and "url(" in (values["style"] or ""):
            self.fetched.append((tag, values["style"] or ""))


def relative(url: str) -> bool:
    parsed = urlparse(url)
    return not parsed.scheme and not url.startswith("#")


def parse(path) -> Resources:
    parser = Resources()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


@pytest.mark.parametrize("kind,axes", [
    ("color_strength", STRENGTH),
    ("temperature", {"loss.normalize": [True, False], "loss.temperature": [0.1, 0.5]}),
    ("search", {"loss.temperature": [0.03, 0.1, 0.4, 1.5]}),
    ("generic", {"loss.temperature": [0.2, 0.5], "augment.ops": ["crop", "crop+color"]}),
])
def test_report_html_fetches_nothing_by_a_relative_path(tmp_path, kind, axes):
    df = frame(axes, lambda p: 50.0 + len(str(p)) % 7, seeds=(0,) if kind == "search" else (0, 1))
    out = write_report(df, kind, StudyInfo(kind=kind, text="name: x\n"), tmp_path, "cmd", curves=curves_of(df))
    page = parse(out.html)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "learning_curves" in summary["figures"] and len(summary["figures"]) >= 2
    assert [t for t, _ in page.fetched] == ["img"] * len(summary["figures"])  # one inlined image per figure
    for tag, url in page.fetched:
        assert url.startswith("data:image/png;base64,"), (tag, url[:80])
        assert base64.b64decode(url.split(",", 1)[1])[:4] == b"\x89PNG"
    assert not [u for _, u in page.fetched if relative(u)]
    assert page.styles == 1  # the style is in the page
    # links may stay: they are followed by a reader, not fetched to draw the page
    assert "tables/trials.csv" in page.links and "tables/curves.csv" in page.links
    assert all(not u.startswith("figures/") for u in page.links)


def test_a_moved_report_html_still_shows_its_figures(tmp_path):
    """The file alone (as MLflow's viewer or an e-mail has it) holds every figure it shows."""
    df = frame(STRENGTH, lambda p: 50 + 10 * p["augment.color.strength"])
    out = write_report(df, "cs", StudyInfo(kind="color_strength", text="name: x\n"), tmp_path / "r", "cmd")
    alone = tmp_path / "alone.html"
    alone.write_text(out.html.read_text())
    images = [u for t, u in parse(alone).fetched if t == "img"]
    pngs = sorted((tmp_path / "r" / "figures").glob("*.png"))
    assert len(images) == len(pngs) >= 1
    inlined = {base64.b64decode(u.split(",", 1)[1]) for u in images}
    assert inlined == {p.read_bytes() for p in pngs}


def test_the_html_tables_have_one_header_row(tmp_path):
    df = frame(STRENGTH, lambda p: 50 + 10 * p["augment.color.strength"])
    write_report(df, "cs", StudyInfo(kind="color_strength", text="name: x\n"), tmp_path, "cmd")
    for path in (tmp_path / "tables" / "main.html", tmp_path / "report.html"):
        head = path.read_text().split("<thead>", 1)[1].split("</thead>", 1)[0]
        assert head.count("<tr") == 1, head
        assert "<th>colour strength</th>" in head.replace(" halign=\"left\"", "")
    tex = (tmp_path / "tables" / "main.tex").read_text()
    header = tex.split("\\midrule")[0].strip().splitlines()
    assert header[-2:] == ["\\toprule", "colour strength & 1/8 & 1/4 & 1/2 & 1 & 1 (+Blur) \\\\"], header


def test_no_empty_curves_frame_is_needed_for_html(tmp_path):
    df = frame({"loss.temperature": [0.2, 0.5]}, lambda p: 50.0)
    write_report(df, "g", StudyInfo(text="name: x\n"), tmp_path, "cmd", curves=pd.DataFrame(
        columns=["loss.temperature", "point", "seed", "epoch", "metric", "value"]))
    page = (tmp_path / "report.html").read_text()
    assert "logged no per-epoch loss or kNN top-1" in page and "tables/curves.csv" not in page
