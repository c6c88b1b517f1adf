"""`keel eval` through `keel.cli.main`, with the group registered as it will be (`keel eval`)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import keel.cli as cli


@pytest.fixture
def keel_main() -> object:
    return cli.main


def _exit_code(main: object, argv: list[str]) -> int:
    with pytest.raises(SystemExit) as caught:
        main(argv)  # type: ignore[operator]
        raise SystemExit(0)
    return int(caught.value.code or 0)


def test_run_list_show_compare(keel_main: object, echo_suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junit, html = echo_suite.parent / "out.xml", echo_suite.parent / "out.html"
    assert _exit_code(keel_main, ["eval", "run", str(echo_suite), "--junit", str(junit), "--html", str(html)]) == 0
    assert ET.parse(junit).getroot().find("testsuite").get("tests") == "3"  # type: ignore[union-attr]
    assert "<svg" in html.read_text()
    out = capsys.readouterr().out
    assert "PASSED" in out and "66.7%" in out
    assert _exit_code(keel_main, ["eval", "run", str(echo_suite), "--fresh"]) == 0
    capsys.readouterr()
    assert _exit_code(keel_main, ["eval", "list"]) == 0
    listing = capsys.readouterr().out
    ids = [line.split("│")[1].strip() for line in listing.splitlines() if "finished" in line]
    assert len(ids) == 2
    assert _exit_code(keel_main, ["eval", "show", ids[0]]) == 0
    assert "case c passed" not in capsys.readouterr().out
    assert _exit_code(keel_main, ["eval", "compare", ids[1], ids[0]]) == 0
    assert "McNemar exact p = 1.0000" in capsys.readouterr().out


def test_failing_thresholds_exit_1(keel_main: object, echo_suite: Path) -> None:
    echo_suite.write_text(echo_suite.read_text().replace("pass_rate: 0.5", "pass_rate: 1.0"))
    assert _exit_code(keel_main, ["eval", "run", str(echo_suite)]) == 1


def test_errors_become_messages(keel_main: object, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(keel_main, ["eval", "run", str(project / "none.eval.yaml")]) == 1
    assert "no such suite file" in capsys.readouterr().err
    assert _exit_code(keel_main, ["eval", "show", "abc"]) == 1
    assert "No eval run 'abc'" in capsys.readouterr().err
