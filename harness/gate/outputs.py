"""Renders a gate's report: markdown for people and CI comments, JUnit XML for CI test views, JSON for tools.

Rendering only: every number here was decided by harness.gate.decide. The JUnit suite keeps the
name "harness.gate.decide", the module that makes the verdicts, so CI dashboards that group by
suite name see the same suite as before.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from xml.etree import ElementTree as ET

from harness.gate.decide import GateReport, GateRow, Verdict

MARKDOWN_HEADER = "| task | metric | baseline | candidate | delta [interval] | allowed drop | p-value | p (Holm) | McNemar p | verdict |"


def _num(x: float) -> str:
    return f"{x:.4g}"


def _signed(x: float) -> str:
    return f"{x:+.4g}"


def _cell(text: str) -> str:
    """Table cells come from task and metric names; a pipe would split the row."""
    return text.replace("|", "\\|")


def to_markdown(report: GateReport) -> str:
    """The verdict and one table row per (task, metric), for a terminal or a CI comment."""
    s = report.settings
    coverage = 1.0 - 2.0 * s.alpha
    lines = [
        f"## Regression gate: {report.verdict.value.upper()}",
        "",
        f"Paired bootstrap, {s.n_resamples} resamples, seed {s.seed}; {s.margin_text()}; alpha {s.alpha:g}, "
        f"Holm over {len(report.rows)} test(s). Intervals are {coverage:.0%} two-sided (each end a one-sided "
        f"{1 - s.alpha:.0%} bound); p tests 'no drop beyond the allowed drop'.",
        "",
        MARKDOWN_HEADER,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in report.rows:
        mcnemar = "" if r.mcnemar_p is None else f"{r.mcnemar_p:.3g}"
        arrow = "" if r.higher_is_better else " (lower is better)"
        lines.append(
            f"| {_cell(r.task)} | {_cell(r.metric)}{arrow} | {_num(r.baseline)} | {_num(r.candidate)} | "
            f"{_signed(r.delta)} [{_signed(r.ci_low)}, {_signed(r.ci_high)}] | {_num(r.allowed_drop)} | "
            f"{r.p_value:.3g} | {r.p_adjusted:.3g} | {mcnemar} | **{r.verdict.value}** |"
        )
    if report.notes:
        lines.append("")
        lines.extend(f"- {note}" for note in report.notes)
    return "\n".join(lines) + "\n"


def _row_message(r: GateRow) -> str:
    return (
        f"{r.metric}: baseline {_num(r.baseline)}, candidate {_num(r.candidate)}, delta {_signed(r.delta)} "
        f"[{_signed(r.ci_low)}, {_signed(r.ci_high)}], allowed drop {_num(r.allowed_drop)}, "
        f"p {r.p_value:.3g} (Holm {r.p_adjusted:.3g})"
    )


def to_junit_xml(report: GateReport) -> str:
    """One testcase per (task, metric): a regression fails, an inconclusive row is skipped."""
    failures = sum(r.verdict is Verdict.REGRESSION for r in report.rows)
    skipped = sum(r.verdict is Verdict.INCONCLUSIVE for r in report.rows)
    counts = {"tests": str(len(report.rows)), "failures": str(failures), "errors": "0", "skipped": str(skipped)}
    root = ET.Element("testsuites", {"name": "harness gate", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": "harness.gate.decide", **counts})
    for r in report.rows:
        case = ET.SubElement(suite, "testcase", {"classname": f"gate.{r.task}", "name": r.metric, "time": "0"})
        message = _row_message(r)
        if r.verdict is Verdict.REGRESSION:
            ET.SubElement(case, "failure", {"message": f"regression: {message}", "type": "regression"}).text = message
        elif r.verdict is Verdict.INCONCLUSIVE:
            ET.SubElement(case, "skipped", {"message": f"inconclusive: {message}"})
        ET.SubElement(case, "system-out").text = message
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _json_float(value: object) -> object:
    """numpy scalars that slipped into a row become plain floats."""
    return float(value)  # type: ignore[arg-type]


def to_json(report: GateReport) -> str:
    """Everything the gate decided, with its settings, as strict JSON (no NaN)."""
    payload = {
        "verdict": report.verdict.value,
        "settings": {**asdict(report.settings), "margin": report.settings.margin_text()},
        "notes": report.notes,
        "rows": [{**asdict(row), "verdict": row.verdict.value} for row in report.rows],
    }
    return json.dumps(payload, indent=2, allow_nan=False, default=_json_float)
