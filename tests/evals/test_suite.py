"""Loading suites strictly: every error names the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from eval_support import ECHO_SUITE, write_suite

from keel.errors import ConfigError
from keel.evals.dataset import SuiteError
from keel.evals.suite import load_suite


def test_a_valid_suite_loads_with_defaults(echo_suite: Path) -> None:
    suite = load_suite(echo_suite)
    assert suite.name == "s" and [c.id for c in suite.cases] == ["a", "b", "c"]
    assert suite.prompt_names == ["echo"] and suite.config.repeat == 2
    assert suite.threshold_for(suite.cases[0]) == 1.0
    assert suite.assertions[0].type == "equals"
    assert issubclass(SuiteError, ConfigError)


def _error(project: Path, text: str) -> SuiteError:
    with pytest.raises(SuiteError) as caught:
        load_suite(write_suite(project, text))
    return caught.value


def test_unknown_top_level_key(project: Path) -> None:
    error = _error(project, ECHO_SUITE + "repaet: 3\n")
    assert "repaet" in str(error) and "unknown key" in str(error) and error.line == 14


def test_bad_type_names_the_key_and_line(project: Path) -> None:
    error = _error(project, ECHO_SUITE.replace("repeat: 2", "repeat: often"))
    assert "s.eval.yaml:12: repeat:" in str(error) and error.key == "repeat"


def test_unknown_assertion_type_lists_the_known_ones(project: Path) -> None:
    error = _error(project, ECHO_SUITE.replace("{type: equals}", "{type: equalz}"))
    assert "unknown assertion type 'equalz'" in str(error) and "json-schema" in str(error) and error.line == 11


def test_unknown_assertion_parameter_and_bad_regex(project: Path) -> None:
    error = _error(project, ECHO_SUITE.replace("{type: equals}", "{type: regex, pattern: '(', wieght: 2}"))
    assert "assertions[0].pattern: not a valid regular expression" in str(error)
    assert "assertions[0].wieght: unknown key" in str(error)


def test_missing_dataset_file(project: Path) -> None:
    text = ECHO_SUITE.split("dataset:")[0] + "dataset: {file: nowhere.jsonl}\nassertions: [{type: equals}]\n"
    error = _error(project, text)
    assert "nowhere.jsonl does not exist" in str(error) and error.key == "dataset.file"


def test_malformed_jsonl_line_names_file_and_line(project: Path) -> None:
    (project / "cases.jsonl").write_text('{"vars": {"text": "x"}}\n\n{"vars": oops}\n')
    text = ECHO_SUITE.split("dataset:")[0] + "dataset: {file: cases.jsonl}\nassertions: [{type: equals}]\n"
    error = _error(project, text)
    assert error.file.endswith("cases.jsonl") and error.line == 3 and "cases.jsonl:3:" in str(error)


def test_jsonl_case_with_unknown_key(project: Path) -> None:
    (project / "cases.jsonl").write_text('{"vars": {"text": "x"}, "expect": 1}\n')
    text = ECHO_SUITE.split("dataset:")[0] + "dataset: {file: cases.jsonl}\nassertions: [{type: equals}]\n"
    error = _error(project, text)
    assert "unknown key 'expect'" in str(error) and error.line == 1


def test_csv_without_header(project: Path) -> None:
    (project / "cases.csv").write_text("\nhello,Echo: hello\n")
    text = ECHO_SUITE.split("dataset:")[0] + "dataset: {file: cases.csv}\nassertions: [{type: equals}]\n"
    error = _error(project, text)
    assert "no header row" in str(error) and error.line == 1


def test_csv_cases_map_columns(project: Path) -> None:
    (project / "cases.csv").write_text("id,text,expected.name,tags\nx1,hello,Ada,\"a, b\"\n")
    text = ECHO_SUITE.split("dataset:")[0] + "dataset: {file: cases.csv}\nassertions: [{type: equals}]\n"
    [case] = load_suite(write_suite(project, text)).cases
    assert (case.id, case.vars, case.expected, case.tags) == ("x1", {"text": "hello"}, {"name": "Ada"}, ["a", "b"])


def test_csv_row_with_wrong_cell_count(project: Path) -> None:
    (project / "cases.csv").write_text("text,expected\nhello\n")
    text = ECHO_SUITE.split("dataset:")[0] + "dataset: {file: cases.csv}\nassertions: [{type: equals}]\n"
    assert _error(project, text).line == 2


def test_dataset_needs_exactly_one_source(project: Path) -> None:
    text = ECHO_SUITE.replace("dataset:\n", "dataset:\n  file: x.jsonl\n")
    assert "exactly one of `file`" in str(_error(project, text))


def test_duplicate_case_ids_and_no_assertions(project: Path) -> None:
    assert "unique" in str(_error(project, ECHO_SUITE.replace("{id: b,", "{id: a,")))
    assert "no assertions" in str(_error(project, ECHO_SUITE.replace("  - {type: equals}\n", "").replace("assertions:\n", "")))


def test_inline_prompt_using_an_undeclared_variable(project: Path) -> None:
    text = ECHO_SUITE.replace("prompts:", "prompts:\n  - {name: bad, input: {}, messages: [{role: user, content: '{{ x }}'}]}")
    assert "inline prompt 'bad'" in str(_error(project, text))


def test_invalid_yaml_and_missing_file(project: Path) -> None:
    assert "invalid YAML" in str(_error(project, "prompts: [\n"))
    with pytest.raises(SuiteError, match="no such suite file"):
        load_suite(project / "missing.eval.yaml")


def test_case_level_assertions_and_threshold(project: Path) -> None:
    text = ECHO_SUITE.replace("{id: c, vars: {text: three}, expected: \"Echo: nope\"}",
                              "{id: c, vars: {text: three}, threshold: 0.5, assertions: [{type: contains, value: three}]}")
    suite = load_suite(write_suite(project, text))
    case = suite.cases[2]
    assert [a.type for a in suite.assertions_for(case)] == ["equals", "contains"] and suite.threshold_for(case) == 0.5


