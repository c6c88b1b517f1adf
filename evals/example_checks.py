"""Python assertions for example.eval.yaml: `function: example_checks:NAME`."""

import json


def plausible_age(output: str, case: dict) -> tuple[bool, str]:
    """The extracted age is a whole number a person could be."""
    try:
        age = json.loads(output).get("age")
    except (ValueError, AttributeError):
        return False, "not a JSON object"
    ok = isinstance(age, int) and 0 < age < 130
    return ok, "" if ok else f"implausible age {age!r}"
