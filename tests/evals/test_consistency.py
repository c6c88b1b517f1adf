"""Consistency and pass-rate figures against hand-computed values."""

from __future__ import annotations

import pytest

from keel.evals.consistency import (agreement, case_consistency, consistency, json_field_agreement, pass_at_k,
                                    pass_hat_k, wilson_interval)


def test_agreement_is_the_modal_share() -> None:
    assert agreement(["a", "a", "b"]) == pytest.approx(2 / 3)
    assert agreement(["a", "b", "c", "d"]) == 0.25
    assert agreement(["only"]) == 1.0


def test_normalized_agreement_ignores_case_and_spacing() -> None:
    measures = consistency(["Paris", " paris\n", "PARIS.", "Paris"])
    assert measures["exact"] == 0.5 and measures["normalized"] == 0.75 and measures["json_fields"] is None


def test_json_field_by_field_agreement() -> None:
    texts = ['{"name": "Ada", "age": 36}', '{"age": 36, "name": "Ada"}', '{"name": "Ada", "age": 37}']
    # name: 3/3 agree; age: 2/3 agree → mean 5/6
    assert json_field_agreement(texts) == pytest.approx(5 / 6)
    # a missing field counts as its own value: x agrees 2/3 (1, 1, missing), y 1/3 each → (2/3 + 1/3) / 2
    assert json_field_agreement(['{"x": 1}', '{"x": 1}', '{"y": 2}']) == pytest.approx(((2 / 3) + (2 / 3)) / 2)
    assert case_consistency(texts) == pytest.approx(5 / 6)
    assert case_consistency(["A b", "a  B"]) == 1.0


def test_pass_at_k_and_pass_hat_k() -> None:
    # n=5, c=2, k=2: pass@2 = 1 - C(3,2)/C(5,2) = 1 - 3/10; pass^2 = C(2,2)/C(5,2) = 1/10
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_hat_k(5, 2, 2) == pytest.approx(0.1)
    assert pass_at_k(3, 0, 3) == 0.0 and pass_at_k(3, 1, 3) == 1.0
    assert pass_hat_k(3, 3, 3) == 1.0 and pass_hat_k(3, 2, 3) == 0.0
    assert pass_at_k(4, 1, 1) == pass_hat_k(4, 1, 1) == 0.25
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_wilson_interval() -> None:
    # 8 of 10, z = 1.96: centre (0.8 + 0.19208)/1.38415 = 0.71674, margin 0.22963 → 0.4902 … 0.9433
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(0.7225, abs=1e-4)
