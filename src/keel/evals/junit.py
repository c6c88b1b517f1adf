"""A run as JUnit XML: one testcase per case × prompt × model, failing with the assertions' messages."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any


def junit_xml(run: dict[str, Any], results: list[dict[str, Any]]) -> str:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in results:
        groups[(row["prompt"], row["model"], row["case_id"])].append(row)
    suite = ET.Element("testsuite", name=run["suite"], tests=str(len(groups)), id=run["id"])
    failures = errors = 0
    for (prompt, model, case_id), rows in sorted(groups.items()):
        seconds = sum((r.get("latency_ms") or 0) for r in rows) / 1000
        case = ET.SubElement(suite, "testcase", classname=f"{run['suite']}.{prompt}.{model}", name=case_id, time=f"{seconds:.3f}")
        failed = [r for r in rows if not r["passed"]]
        if not failed:
            continue
        if all(r.get("error") for r in failed):
            errors += 1
            ET.SubElement(case, "error", message=str(failed[0]["error"])).text = _details(failed)
        else:
            failures += 1
            ET.SubElement(case, "failure", message=_message(failed, len(rows))).text = _details(failed)
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def write_junit(path: Path, run: dict[str, Any], results: list[dict[str, Any]]) -> None:
    path.write_text(junit_xml(run, results), encoding="utf-8")


def _message(failed: list[dict[str, Any]], total: int) -> str:
    messages = sorted({a["message"] for r in failed for a in (r.get("assertions") or []) if not a["passed"] and a["message"]})
    return f"{len(failed)}/{total} repeats failed: " + "; ".join(messages)[:500]


def _details(failed: list[dict[str, Any]]) -> str:
    lines = []
    for row in failed:
        lines.append(f"repeat {row['repeat']}: score {row['score']:.2f}, output: {str(row.get('output'))[:300]!r}")
        if row.get("error"):
            lines.append(f"  error: {row['error']}")
        for outcome in row.get("assertions") or []:
            if not outcome["passed"]:
                lines.append(f"  {outcome['name']}: {outcome['message']}")
    return "\n".join(lines)
