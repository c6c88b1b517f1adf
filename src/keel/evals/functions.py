"""The `python` assertion: a function of yours scores the answer."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr

from ..errors import ConfigError
from ._base import Assertion, Environment, Observation, Outcome, verdict


class PythonCheck(Assertion):
    """`function: module:name` called as name(output, case) → bool, a score in 0..1, or (bool, reason).
    `module` is imported, or read from `module.py` beside the suite file."""

    type: Literal["python"]
    function: str = Field(pattern=r"^[\w.]+:\w+$")
    threshold: float = Field(default=0.5, ge=0, le=1)
    _base_dir: Path | None = PrivateAttr(default=None)

    async def evaluate(self, observation: Observation, env: Environment) -> Outcome:
        function = self.load()
        result = function(observation.text, observation.case.model_dump())
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, tuple) and len(result) == 2:
            return verdict(bool(result[0]), str(result[1]))
        if isinstance(result, bool):
            return verdict(result, f"{self.function} returned False")
        if isinstance(result, int | float):
            score = float(result)
            return Outcome(passed=score >= self.threshold, score=score,
                           message="" if score >= self.threshold else f"{self.function} scored {score:g} < {self.threshold:g}")
        raise ConfigError(f"{self.function} returned {type(result).__name__}; return a bool, a score in 0..1 or (bool, reason).")

    def check_ready(self) -> None:
        self.load()

    def load(self) -> Any:
        module_name, _, name = self.function.partition(":")
        module = _import(module_name, self._base_dir)
        function = getattr(module, name, None)
        if not callable(function):
            raise ConfigError(f"python assertion: {module_name} has no function {name!r}; fix `function: {self.function}`.")
        return function


#: When each module read from beside a suite was loaded: (mtime, size) of its file.
_LOADED: dict[str, tuple[int, int]] = {}


def _import(module_name: str, base_dir: Path | None) -> Any:
    beside = base_dir / (module_name.replace(".", "/") + ".py") if base_dir else None
    if beside is not None and beside.is_file():
        key = f"keel_eval_checks.{beside.resolve()}"
        stat = beside.stat()
        if key not in sys.modules or _LOADED.get(key) != (stat.st_mtime_ns, stat.st_size):  # edited: load anew
            _LOADED[key] = (stat.st_mtime_ns, stat.st_size)
            spec = importlib.util.spec_from_file_location(key, beside)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[key] = module
        return sys.modules[key]
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"python assertion: cannot import {module_name!r} ({exc}); put {module_name}.py beside the "
                          "suite file or make it importable.") from None
