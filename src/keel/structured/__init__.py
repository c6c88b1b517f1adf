"""Structured output: answers that match a schema, enforced per provider, validated and repaired.

    OutputSpec        the shape asked for: a Pydantic model, any TypeAdapter type, or a JSON Schema
    StructuredStage   the pipeline stage: picks the path, validates, repairs (see `stage`)
    mode_for          settings → (target → path): native, tool, grammar, fake or prompt (see `paths`)
"""

from .paths import mode_for as mode_for
from .paths import path_for as path_for
from .spec import OutputSpec as OutputSpec
from .spec import Problem as Problem
from .spec import strip_fences as strip_fences
from .stage import StructuredStage as StructuredStage
