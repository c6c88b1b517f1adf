"""Evals: the `pytest` of LLM features.

    suite.py        evals/NAME.eval.yaml, loaded strictly (SuiteError names file, line and key)
    dataset.py      cases inline, or from JSONL / CSV files
    assertions.py   every assertion type by name, and the weighted score of an answer
      checks.py       text, JSON, JSON path, numbers, length, latency, cost
      functions.py    `python`: a function of yours
      pii.py          `no-pii`: e-mails, phones, cards (Luhn), IBANs (mod 97)
      judge.py        `llm-judge`: a model grades by a rubric
      similarity.py   `similar`: embeddings (optional extra)
    consistency.py  agreement of repeats, pass@k, pass^k, Wilson intervals
    runner.py       EvalRunner: concurrent, traced, resumable
    summary.py      figures per prompt × model cell and the threshold verdict
    compare.py      two runs: McNemar's exact test, paired bootstrap
    junit.py, html.py   reports

Importing this package does not import the store (SQLAlchemy), the web stack or the model runtime.
"""

from __future__ import annotations

from .dataset import Case as Case
from .dataset import SuiteError as SuiteError
from .runner import EvalRunner as EvalRunner
from .runner import RunResult as RunResult
from .suite import Suite as Suite
from .suite import load_suite as load_suite

__all__ = ["Case", "EvalRunner", "RunResult", "Suite", "SuiteError", "load_suite"]
