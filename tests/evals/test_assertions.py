"""Every assertion type on real values."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eval_support import run

from keel.evals._base import Environment, Observation, Outcome
from keel.evals.assertions import parse_assertions, score
from keel.evals.dataset import Case
from keel.evals.jsonpath import parse_path, read_path
from keel.evals.pii import find_pii, iban_valid, luhn_valid


def check(spec: dict[str, Any], text: str, *, expected: Any = None, latency: float | None = 10.0,
          cost: Decimal | None = Decimal("0.001"), env: Environment | None = None) -> Outcome:
    [assertion] = parse_assertions([spec])
    observation = Observation(text, Case(id="c", vars={"q": "x"}, expected=expected), "fake/echo", "p", latency, cost)
    return run(assertion.evaluate(observation, env or Environment()))


@pytest.mark.parametrize(("spec", "text", "passed"), [
    ({"type": "equals", "value": "Paris"}, "  Paris\n", True),
    ({"type": "equals", "value": "paris"}, "Paris", False),
    ({"type": "equals", "value": "paris", "case_sensitive": False}, "Paris", True),
    ({"type": "equals", "value": {"a": 1}}, '{"a": 1}', True),
    ({"type": "equals", "value": {"a": 1}}, "a=1", False),
    ({"type": "contains", "value": ["red", "blue"]}, "red and blue", True),
    ({"type": "contains", "value": ["red", "green"]}, "red and blue", False),
    ({"type": "contains", "value": "RED", "case_sensitive": False}, "red", True),
    ({"type": "not-contains", "value": ["sorry"]}, "Sure!", True),
    ({"type": "not-contains", "value": "Sorry", "case_sensitive": False}, "so sorry", False),
    ({"type": "starts-with", "value": "{"}, '  {"a": 1}', True),
    ({"type": "starts-with", "value": ["Yes", "No"]}, "Maybe", False),
    ({"type": "regex", "pattern": r"\d{3}-\d{4}"}, "call 555-1234", True),
    ({"type": "regex", "pattern": "^abc$", "case_sensitive": False}, "ABC", True),
    ({"type": "json-valid"}, "[1, 2]", True),
    ({"type": "json-valid"}, "{oops", False),
    ({"type": "json-schema", "schema": {"type": "object", "required": ["n"]}}, '{"n": 1}', True),
    ({"type": "json-schema", "schema": {"type": "object", "required": ["n"]}}, '{"m": 1}', False),
    ({"type": "json-path", "path": "$.a.b[1]", "value": 3}, '{"a": {"b": [2, 3]}}', True),
    ({"type": "json-path", "path": "$.a.c", "value": 3}, '{"a": {"b": [2, 3]}}', False),
    ({"type": "numeric", "value": 3.14, "tolerance": 0.01}, "about 3.141 units", True),
    ({"type": "numeric", "value": 10, "path": "$.n"}, '{"n": 11}', False),
    ({"type": "length", "min": 2, "max": 3, "unit": "words"}, "one two", True),
    ({"type": "length", "max": 3}, "four", False),
    ({"type": "latency", "max_ms": 50}, "x", True),
    ({"type": "latency", "max_ms": 5}, "x", False),
    ({"type": "cost", "max": "0.01"}, "x", True),
    ({"type": "cost", "max": "0.0001"}, "x", False),
    ({"type": "no-pii"}, "Nothing personal here, order 12345.", True),
])
def test_assertion(spec: dict[str, Any], text: str, passed: bool) -> None:
    outcome = check(spec, text)
    assert outcome.passed is passed
    assert (outcome.message == "") is passed


def test_messages_say_what_is_wrong() -> None:
    assert check({"type": "equals", "value": "a"}, "b").message == "expected 'a', got 'b'"
    assert check({"type": "json-path", "path": "$.n", "value": 2}, '{"n": 1}').message == "$.n is 1, expected 2"
    assert check({"type": "json-schema", "schema": {"properties": {"n": {"type": "string"}}}}, '{"n": 1}').message.startswith("schema: n:")


def test_expected_values_come_from_the_case() -> None:
    assert check({"type": "equals"}, "Paris", expected="Paris").passed
    assert check({"type": "json-path", "path": "$.name", "value": {"expected": "name"}}, '{"name": "Ada"}', expected={"name": "Ada"}).passed
    outcome = run(score(parse_assertions([{"type": "equals", "value": {"expected": "nope"}}]),
                        Observation("x", Case(id="c", expected={}), "m", "p"), Environment()))
    assert outcome[0] == 0.0 and "no expected.nope" in outcome[1][0]["message"]


def test_unknown_cost_fails_and_never_passes_as_zero() -> None:
    outcome = check({"type": "cost", "max": "1"}, "x", cost=None)
    assert not outcome.passed and "cost unknown" in outcome.message
    assert not check({"type": "latency", "max_ms": 1}, "x", latency=None).passed


def test_pii_detector_checks_checksums() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB82 WEST 1234 5698 7654 33")
    text = "Mail ada@example.com, call +44 20 7946 0958, card 4111 1111 1111 1111, IBAN GB82WEST12345698765432."
    assert [kind for kind, _ in find_pii(text)] == ["email", "iban", "credit_card", "phone"]
    assert find_pii("card 4111 1111 1111 1112") == []  # fails Luhn: not a card (too long for a phone)
    outcome = check({"type": "no-pii", "kinds": ["email"]}, "write to ada@example.com")
    assert not outcome.passed and outcome.details == {"found": ["email"]} and "ada@example.com" not in outcome.message
    assert check({"type": "no-pii", "kinds": ["email"]}, "call 020 7946 0958").passed


def test_python_function_results(project: Path) -> None:
    (project / "mychecks.py").write_text(
        "def is_yes(output, case):\n    return output == 'yes'\n"
        "def half(output, case):\n    return 0.5\n"
        "def reasoned(output, case):\n    return (False, 'because ' + case['id'])\n"
    )
    [a, b, c] = parse_assertions([{"type": "python", "function": "mychecks:is_yes"},
                                  {"type": "python", "function": "mychecks:half", "threshold": 0.6},
                                  {"type": "python", "function": "mychecks:reasoned"}])
    for assertion in (a, b, c):
        assertion._base_dir = project
    observation = Observation("yes", Case(id="c7"), "m", "p")
    env = Environment()
    assert run(a.evaluate(observation, env)).passed
    half = run(b.evaluate(observation, env))
    assert not half.passed and half.score == 0.5 and half.credit == 0.5
    assert run(c.evaluate(observation, env)).message == "because c7"


def test_python_function_that_cannot_be_found(project: Path) -> None:
    from keel.errors import ConfigError

    [missing] = parse_assertions([{"type": "python", "function": "no_such_module_here:f"}])
    with pytest.raises(ConfigError, match="cannot import"):
        missing.check_ready()


def test_weighted_score_gives_partial_credit() -> None:
    assertions = parse_assertions([{"type": "contains", "value": "a", "weight": 3}, {"type": "contains", "value": "z"}])
    value, outcomes = run(score(assertions, Observation("abc", Case(id="c"), "m", "p"), Environment()))
    assert value == 0.75 and [o["passed"] for o in outcomes] == [True, False]


def test_json_path_reader() -> None:
    assert parse_path("$.a['b c'][0][\"d\"]") == ["a", "b c", 0, "d"]
    assert read_path({"a": [{"b": None}]}, "$.a[0].b") == (True, None)
    assert read_path({"a": []}, "$.a[0]") == (False, None)
    assert read_path([1, 2], "$[-1]") == (True, 2)
    with pytest.raises(ValueError, match="character 2"):
        parse_path("$.[x]")


def test_llm_judge_on_the_fake_provider(project: Path) -> None:
    from keel import AsyncClient

    (project / "keel.toml").write_text("[cache]\nenabled = false\n")  # each verdict below is queued fresh

    async def judge(reply: str) -> tuple[Outcome, Any]:
        async with AsyncClient(record=False) as client:
            fake = client.provider("fake")
            fake.queue(reply)
            env = Environment(client, judge_model="fake/judge")
            [assertion] = parse_assertions([{"type": "llm-judge", "rubric": "Is it polite?", "threshold": 0.7}])
            outcome = await assertion.evaluate(Observation("Thanks!", Case(id="c", vars={"q": "hi"}), "fake/x", "p"), env)
            return outcome, fake.history[-1][1]

    outcome, request = run(judge('{"pass": true, "score": 0.9, "reason": "says thanks"}'))
    assert outcome.passed and outcome.score == 0.9
    assert outcome.details["verdict"] is True and outcome.details["reason"] == "says thanks"
    assert request.json_schema["required"] == ["pass", "score", "reason"] and "Is it polite?" in request.messages[1].text()
    low, _ = run(judge('{"pass": true, "score": 0.5, "reason": "meh"}'))
    assert not low.passed and low.message == "judge: meh"
    broken, _ = run(judge("not json"))
    assert not broken.passed and "judge fake/judge failed" in broken.message
