"""Every report format: exact output (golden files) and structure checks that do not depend on the goldens.

Regenerate the golden files after an intended change with NEURONOPS_UPDATE_GOLDEN=1 pytest tests/test_formats.py
(and look at the diff). The HTML's rendering was checked by hand in headless Chromium (see docs/reports.md); here it
is parsed: no external resources, balanced tags, and the charts' bars and lines match the report's numbers.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_models import scenario_reports, write_models

from estimator.cli import REPORT_FORMAT_NAMES
from estimator.compare import report_from_dict
from estimator.formats import REPORT_FORMATS

GOLDEN = Path(__file__).parent / "golden"
EXTENSIONS = {"table": "txt", "json": "json", "csv": "csv", "markdown": "md", "html": "html"}
SCENARIOS = ("replay", "dense", "mixed", "plain")


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("NEURONOPS_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} missing: run with NEURONOPS_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats")
    write_models(folder)
    return scenario_reports(folder)


def test_cli_offers_every_format():
    assert list(REPORT_FORMATS) == REPORT_FORMAT_NAMES


@pytest.mark.parametrize("fmt", list(EXTENSIONS))
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_golden(reports, scenario, fmt):
    golden(f"report_{scenario}.{EXTENSIONS[fmt]}", REPORT_FORMATS[fmt](reports[scenario]))


# ---------------------------------------------------------------- CSV

def read_csv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    lines = text.splitlines()
    comments = [line for line in lines if line.startswith("#")]
    assert lines[: len(comments)] == comments  # all '#' lines come first, then the header
    rows = list(csv.DictReader(io.StringIO("\n".join(lines[len(comments):]))))
    return comments, rows


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_csv_is_one_row_per_layer_plus_totals_with_plain_numbers(reports, scenario):
    report = reports[scenario]
    comments, rows = read_csv(REPORT_FORMATS["csv"](report))
    # the "dense" scenario is stepwise without --steps: one time step's figures, under headers that say so
    per = "per_step" if scenario == "dense" else "per_sample"
    assert (report.per == "time step") == (scenario == "dense")
    assert f"dense_ops_{per}" in rows[0] and f"effective_ops_{per}" in rows[0]
    rows = [{key.replace("_per_step", "_per_sample"): value for key, value in row.items()} for row in rows]
    assert [row["layer"] for row in rows] == [layer.name for layer in report.layers] + ["total"]
    for row, layer in zip(rows, report.layers, strict=False):
        assert row["dense_ops_per_sample"] == ("" if layer.dense_ops is None else str(layer.dense_ops))
        assert row["spikes_run"] == ("" if layer.spikes is None else str(layer.spikes))
        if layer.firing_rate is not None:
            assert float(row["firing_rate"]) == layer.firing_rate  # full precision: round-trips exactly
    total = rows[-1]
    dense = report.totals.neuron_dense_ops
    assert total["dense_ops_per_sample"] == ("" if dense is None else str(dense))
    if report.totals.effective_neuron_ops is not None:
        assert float(total["effective_ops_per_sample"]) == report.totals.effective_neuron_ops
    for row in rows:  # machine-friendly: no thousands separators or units in any number column
        assert not any("," in value or " " in value for key, value in row.items()
                       if key.endswith(("_ops", "_sample", "_run", "_per_s", "rate")) and key != "style")
    text = "\n".join(comments)
    # conventions travel with the data; a report without a replay has no effective ops, and no convention
    assert (f"convention {report.convention}" in text) == (report.samples is not None)
    if report.feasibility is not None:
        assert all(f"# assumption: {' '.join(a.split())}" in comments for a in report.feasibility.assumptions)


# ---------------------------------------------------------------- JSON and Markdown

@pytest.mark.parametrize("scenario", SCENARIOS)
def test_json_round_trips_to_the_same_report(reports, scenario):
    import dataclasses

    report = reports[scenario]
    data = json.loads(REPORT_FORMATS["json"](report))
    assert data["schema"] == "neuronops.report/1"
    assert report_from_dict(data) == dataclasses.replace(report, feasibility=None)
    assert ("feasibility" in data) == (report.feasibility is not None)


def test_markdown_tables_have_one_row_per_layer(reports):
    report = reports["mixed"]
    text = REPORT_FORMATS["markdown"](report)
    layer_rows = [line for line in text.splitlines() if line.startswith(("| lif1 |", "| q2 |", "| total |"))]
    assert len(layer_rows) == 4  # two layers + total, and lif1 again in the per-layer feasibility table
    assert "## Uncosted layers (not in the totals)" in text and "**q2**" in text
    assert all(line.count("|") == layer_rows[0].count("|") for line in layer_rows[:1])
    assert "## Conventions" in text and "Assumptions:" in text


# ---------------------------------------------------------------- HTML

VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "embed", "source", "track", "wbr"}
SVG_LEAVES = {"rect", "line", "circle", "polyline", "path"}  # may be self-closed in inline SVG


class Page(HTMLParser):
    """Collects every element (tag, attributes) and checks that non-void tags are balanced."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)

    def find(self, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and (cls is None or cls in a.get("class", "").split())]


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    assert page.problems == [] and page.stack == [], (page.problems, page.stack)
    return page


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_html_is_self_contained(reports, scenario):
    text = REPORT_FORMATS["html"](reports[scenario])
    page = parse(text)
    assert text.startswith("<!DOCTYPE html>")
    for tag in ("script", "link", "img", "iframe", "object", "embed", "base"):
        assert page.find(tag) == [], f"<{tag}> found"
    for tag, attrs in page.elements:
        for key in ("src", "href", "xlink:href", "srcset", "action", "data"):
            assert key not in attrs, f"<{tag} {key}=…>"
    assert "url(" not in text and "@import" not in text
    assert not re.search(r"https?://", text)


def _widths(page: Page, cls: str) -> list[float]:
    return [float(a["width"]) for a in page.find("rect", cls)]


def test_html_charts_match_the_numbers(reports):
    report = reports["replay"]
    page = parse(REPORT_FORMATS["html"](report))
    assert [a["id"] for a in page.find("svg")] == ["chart-ops", "chart-rate", "chart-steps"]
    costed = [row for row in report.layers if row.cost_per_update is not None]
    dense, effective = _widths(page, "dense"), _widths(page, "effective")
    assert len(dense) == len(effective) == len(costed)
    # bar lengths are proportional to the values (to the 0.1 px the SVG is written with)
    assert dense[1] / dense[0] == pytest.approx(costed[1].dense_ops / costed[0].dense_ops, abs=2e-3)
    assert effective[0] / dense[0] == pytest.approx(costed[0].effective_ops / costed[0].dense_ops, abs=2e-3)
    rates = _widths(page, "rate")
    assert len(rates) == len(report.layers)
    assert rates[1] / rates[0] == pytest.approx(report.layers[1].firing_rate / report.layers[0].firing_rate,
                                                abs=2e-3)
    lines = page.find("polyline", "series")
    assert len(lines) == len(report.layers)
    for attrs, row in zip(lines, report.layers, strict=True):
        points = [tuple(map(float, p.split(","))) for p in attrs["points"].split()]
        assert len(points) == report.time_steps
        # higher firing at a step is drawn higher (smaller y): the order of the points matches the counts
        counts = row.spikes_per_step
        for a in range(len(counts)):
            for b in range(len(counts)):
                if counts[a] > counts[b]:
                    assert points[a][1] < points[b][1]


def test_html_without_replay_has_dense_bars_only(reports):
    page = parse(REPORT_FORMATS["html"](reports["dense"]))
    assert len(page.find("rect", "dense")) == 2 and page.find("rect", "effective") == []
    assert [a["id"] for a in page.find("svg")] == ["chart-ops"]
    assert "need a replay of recorded inputs" in "".join(page.text)


def test_html_shows_uncosted_layers_verdict_and_assumptions(reports):
    report = reports["mixed"]
    page = parse(REPORT_FORMATS["html"](report))
    text = " ".join("".join(page.text).split())
    assert "q2: update matches no registered neuron kind" in text
    assert len(page.find("rect", "dense")) == 1  # the uncosted layer has no bar …
    assert "uncosted: not in the totals" in text  # … but a label saying why
    assert page.find("div", "verdict") and "NOT FEASIBLE" in text
    for assumption in report.feasibility.assumptions:
        assert " ".join(assumption.split()) in text
    assert "Conventions" in text


def test_html_step_chart_tells_many_layers_apart(reports):
    """Beyond the palette's 8 colours, lines repeat the colours dashed: every layer keeps its own line style, and
    the legend shows the dash."""
    from dataclasses import replace

    base = reports["replay"]
    layers = tuple(replace(row, name=f"{row.name}_{i}") for i in range(6) for row in base.layers)
    assert len(layers) >= 12
    page = parse(REPORT_FORMATS["html"](replace(base, layers=layers)))
    lines = page.find("polyline", "series")
    assert len(lines) == len(layers)
    styles = [(a["stroke"], a.get("stroke-dasharray", "")) for a in lines]
    assert len(set(styles)) == len(styles)
    assert all(dash == "" for _, dash in styles[:8]) and all(dash for _, dash in styles[8:])
    dashed_keys = [a for a in page.find("line") if a.get("stroke-dasharray")]
    assert len(dashed_keys) == len(layers) - 8


def test_si_rounds_the_value_as_it_prints():
    """175.75 pJ per step at 1000 steps/s is 175.75 nW: both print alike (half to even on the decimal value), not
    175.8 pJ beside 175.7 nW as dividing the float by 1e-9 gave."""
    from fractions import Fraction

    from estimator.formats_text import joules, si

    watts = float(Fraction("175.75") * 1000 * Fraction(1, 10**12))  # as feasibility computes power
    assert (joules(175.75), si(watts, "W")) == ("175.8 pJ", "175.8 nW")
    assert (joules(175.65), si(float(Fraction("175.65") * 1000 * Fraction(1, 10**12)), "W")) == ("175.6 pJ",
                                                                                                  "175.6 nW")
    # counts take no prefix below one: "600 mops/s" (milli) read as 600 Mops/s (mega), 10⁹ times more
    assert [si(v, "ops/s") for v in (216000.0, 999_960, -5e4, 11290.5, 0.45, 3, 6e-12, 0.00012345)] == [
        "216 kops/s", "1 Mops/s", "-50 kops/s", "11.29 kops/s", "0.45 ops/s", "3 ops/s", "6e-12 ops/s",
        "0.0001234 ops/s"]
    assert [si(v, "W") for v in (0.45, 2e-18)] == ["450 mW", "0.002 fW"]  # watts and joules keep them


def test_small_figures_keep_their_significant_digits():
    """Effective ops of 0.006 per sample printed as 0.01 (67 % off), a firing rate of 3e-05 as 0.0000 beside 30
    spikes, a need of 0.0004 % of the budget as 0.0 %; 12800.0 % had no thousands separator."""
    from estimator.formats import _number, _percent, _rate

    assert [_number(v) for v in (0.006, 0.0123, 0.125, 1880.666, 3, 2.0, None)] == [
        "0.006", "0.012", "0.12", "1,880.67", "3", "2", "-"]
    assert [_rate(v) for v in (3e-05, 0.00042, 0.001, 0.2771682, 0.0, None)] == [
        "3e-05", "0.00042", "0.0010", "0.2772", "0.0000", "-"]
    assert [_percent(v) for v in (4.2e-06, 0.5, 128.0, 1e29, 0.0, None)] == [
        "0.00042%", "50.0%", "12,800.0%", "1e+31%", "0.0%", "-"]


def test_an_incomplete_report_marks_its_headline_figures_as_lower_bounds(reports):
    """The HTML cards and the feasibility lines of a report with an uncosted layer showed its totals unmarked: the
    summary table said "incomplete", the big numbers above it did not."""
    mixed, replay = reports["mixed"], reports["replay"]
    assert not mixed.totals.complete and replay.totals.complete
    cards = re.search(r'<div class="cards">.*?</div></div></div>', REPORT_FORMATS["html"](mixed)).group(0)
    assert "Neuron Dense Ops / sample</div><div class=\"value\">≥ 192<" in cards
    assert "uncosted layers</div><div class=\"value\">1: left out, figures are lower bounds<" in cards
    assert "≥" not in REPORT_FORMATS["html"](replay).split('<div class="cards">')[1].split("</div></div></div>")[0]
    for fmt in ("table", "markdown", "csv"):
        text = REPORT_FORMATS[fmt](mixed)
        assert "dense neuron ops/s" in text and "(lower bound: uncosted layers left out)" in text, fmt
        assert "lower bound" not in REPORT_FORMATS[fmt](replay), fmt
