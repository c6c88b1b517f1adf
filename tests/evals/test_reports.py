"""JUnit XML parsed back, and the self-contained HTML report with its SVG charts."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from eval_support import run_suite

from keel import AsyncClient
from keel.evals.html import html_report
from keel.evals.junit import junit_xml
from keel.store import open_store


def _run_and_results(path: Path) -> tuple[dict, list[dict]]:
    result = run_suite(path)
    store = open_store(AsyncClient(record=False).settings.effective_store_url)
    try:
        return store.get_eval_run(result.run_id), store.eval_results(result.run_id)  # type: ignore[return-value]
    finally:
        store.close()


def test_junit_has_one_testcase_per_case_and_cell_with_failure_messages(echo_suite: Path) -> None:
    run, results = _run_and_results(echo_suite)
    root = ET.fromstring(junit_xml(run, results))
    [suite] = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("errors") == "0"
    assert [c.get("name") for c in cases] == ["a", "b", "c"] and cases[0].get("classname") == "s.echo.fake/echo"
    [failure] = cases[2].findall("failure")
    assert failure.get("message") == "2/2 repeats failed: expected 'Echo: nope', got 'Echo: three'"
    assert "repeat 0: score 0.00" in (failure.text or "")


def test_html_is_self_contained_with_svg_charts(echo_suite: Path) -> None:
    run, results = _run_and_results(echo_suite)
    page = html_report(run, results)
    for chart in ("chart-pass-rate", "chart-cost-quality", "chart-latency"):
        assert f"<svg class='{chart}'" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page
    assert "<script" not in page and "Echo: three" in page and "PASSED" in page


def test_html_draws_unknown_cost_hollow() -> None:
    cell = {"prompt": "p", "model": "m", "pass_rate": 0.5, "ci95": [0.1, 0.9], "ok": False, "cost": None, "cost_unknown": 2,
            "consistency": 1.0, "pass_at_k": 0.5, "pass_hat_k": 0.5, "k": 1, "prompt_tokens": 1, "completion_tokens": 1,
            "latency_p50_ms": None}
    run = {"id": "x" * 32, "suite": "s", "status": "finished", "summary": {"cells": [cell], "passed": False, "failures": ["f"]}}
    page = html_report(run, [])
    assert "cost unknown" in page and "unknown (2 answers)" in page


def test_chart_labels_are_escaped_and_cut_before_escaping() -> None:
    from keel.evals.charts import latency_chart, pass_rate_chart

    cell = {"prompt": "a&b<c>" * 4, "model": "m", "pass_rate": 1.0, "ci95": [0.5, 1.0], "ok": True}
    chart = pass_rate_chart([cell])
    ET.fromstring(chart)  # well-formed: no raw '<' or a half entity
    assert ">a&amp;b&lt;c&gt;a&amp;b&lt;c&gt;a&amp;b&lt;c&gt;a&amp;b…<" in chart
    assert "no latencies recorded" in latency_chart([])


def test_html_shows_semantic_agreement_when_the_run_measured_it(project: Path) -> None:
    from eval_support import write_suite

    suite = write_suite(project, """\
        prompts:
          - name: echo
            messages: [{role: user, content: "{{ text }}"}]
        models: [fake/echo]
        dataset:
          cases: [{id: a, vars: {text: the cat sat on the mat}, expected: "Echo: a cat sat on a mat"}]
        assertions:
          - {type: similar, threshold: 0.8}
        repeat: 2
        """)
    run, results = _run_and_results(suite)
    [cell] = run["summary"]["cells"]
    assert cell["semantic_consistency"] is not None and cell["semantic_consistency"] > 0.99  # identical answers
    assert f"(semantic {cell['semantic_consistency']:.2f})" in html_report(run, results)
