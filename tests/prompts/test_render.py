"""Rendering: defaults, typed variables, precise errors, and the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.errors import PromptRenderError
from keel.prompts import PromptSpec

from .conftest import Write


@pytest.fixture
def summarize(prompts_dir: Path) -> PromptSpec:
    return PromptSpec.load(prompts_dir / "summarize.prompt.yaml")


def render_error(spec: PromptSpec, variables: dict) -> PromptRenderError:
    with pytest.raises(PromptRenderError) as info:
        spec.render(variables)
    return info.value


def test_renders_openai_shaped_messages_with_defaults_and_partials(summarize: PromptSpec) -> None:
    assert summarize.render({"text": "Keel pins prompts."}) == [
        {"role": "system", "content": "Be brief and neutral."},
        {"role": "user", "content": "Summarize in 3 bullets:\nKeel pins prompts.\n"},
    ]


def test_render_reference_uses_reference_input(summarize: PromptSpec) -> None:
    assert summarize.render_reference()[1]["content"] == "Summarize in 2 bullets:\nKeel pins prompts and models.\n"


def test_render_reference_without_reference_input(write: Write) -> None:
    spec = PromptSpec.load(write("plain", "model: local\nmessages: [{role: user, content: hi}]\n"))
    with pytest.raises(PromptRenderError, match="no `reference_input`"):
        spec.render_reference()


def test_no_autoescape_and_trailing_newline_kept(write: Write) -> None:
    spec = PromptSpec.load(write("raw", "model: local\ninput: {t: string}\nmessages:\n  - role: user\n    content: |\n      <{{ t }}>\n\n"))
    assert spec.render({"t": "a & <b>"})[0]["content"] == "<a & <b>>\n"


def test_message_name_is_passed_through(write: Write) -> None:
    spec = PromptSpec.load(write("named", "model: local\nmessages: [{role: user, name: ann, content: hi}]\n"))
    assert spec.render() == [{"role": "user", "content": "hi", "name": "ann"}]


def test_missing_variable_names_variable_file_and_line(summarize: PromptSpec, prompts_dir: Path) -> None:
    error = render_error(summarize, {"bullets": 2})
    path = str(prompts_dir / "summarize.prompt.yaml")
    assert (error.variable, error.file, error.line) == ("text", path, 17)
    assert str(error) == (
        f"{path}:17: missing variable 'text' for prompt 'summarize' (used here); declared variables: bullets, text."
    )


def test_missing_variable_used_in_a_partial_points_at_the_partial(write: Write, prompts_dir: Path) -> None:
    (prompts_dir / "partials" / "sig.j2").write_text("Regards,\n{{ sender }}\n")
    spec = PromptSpec.load(write("mail", """\
        model: local
        input: {sender: string}
        messages:
          - role: user
            content: "{% include 'sig.j2' %}"
        """))
    error = render_error(spec, {})
    assert (error.variable, error.file, error.line) == ("sender", str(prompts_dir / "partials" / "sig.j2"), 2)


def test_missing_variable_that_no_template_reads_points_at_its_declaration(write: Write) -> None:
    path = write("unused", "model: local\ninput:\n  topic: string\nmessages: [{role: user, content: hi}]\n")
    error = render_error(PromptSpec.load(path), {})
    assert (error.variable, error.file, error.line) == ("topic", str(path), 3)
    assert "(declared here)" in str(error)


def test_unknown_variables_are_named_with_the_declared_ones(summarize: PromptSpec) -> None:
    error = render_error(summarize, {"text": "t", "bulets": 2, "extra": 1})
    assert error.variables == ["bulets", "extra"]
    assert "unknown variable(s) 'bulets', 'extra'; declared variables: bullets, text." in str(error)


def test_wrong_type_names_variable_expected_type_and_value(summarize: PromptSpec, prompts_dir: Path) -> None:
    error = render_error(summarize, {"text": "t", "bullets": "three"})
    assert (error.variable, error.expected, error.value) == ("bullets", "integer", "three")
    assert str(error) == (
        f"{prompts_dir / 'summarize.prompt.yaml'}:6: variable 'bullets' of prompt 'summarize': "
        "expected integer, got 'three' (str)."
    )
    assert "expected string, got 5 (int)" in str(render_error(summarize, {"text": 5}))
    assert "expected integer, got True (bool)" in str(render_error(summarize, {"text": "t", "bullets": True}))


def test_schema_constraints_are_enforced(summarize: PromptSpec) -> None:
    assert "11 is greater than the maximum of 10" in str(render_error(summarize, {"text": "t", "bullets": 11}))


def test_nested_schema_error_names_the_path(write: Write) -> None:
    spec = PromptSpec.load(write("nested", """\
        model: local
        input:
          people: {type: array, items: {type: object, properties: {age: {type: integer}}}}
        messages: [{role: user, content: "{{ people | length }}"}]
        """))
    assert "variable 'people'[0]['age']" in str(render_error(spec, {"people": [{"age": "old"}]}))


def test_templates_cannot_mutate_variables(write: Write) -> None:
    spec = PromptSpec.load(write("mutate", """\
        model: local
        input:
          items: {type: array, default: []}
        messages: [{role: user, content: "{% set _ = items.append(1) %}{{ items | length }}"}]
        """))
    mine = [0]
    with pytest.raises(PromptRenderError, match="unsafe"):
        spec.render({"items": mine})
    assert mine == [0]


def test_missing_attribute_inside_a_template_is_located(write: Write) -> None:
    path = write("attr", """\
        model: local
        input: {user: object}
        messages:
          - role: system
            content: hi
          - role: user
            content: |
              Name: {{ user.name }}
              Email: {{ user.email }}
        """)
    error = render_error(PromptSpec.load(path), {"user": {"name": "Ann"}})
    assert (error.file, error.line) == (str(path), 9)
    assert "'dict object' has no attribute 'email'" in str(error)


def test_sandbox_blocks_attribute_escape(write: Write, tmp_path: Path) -> None:
    path = write("escape", """\
        model: local
        messages:
          - role: user
            content: |
              {{ ''.__class__.__mro__ }}
        """)
    error = render_error(PromptSpec.load(path), {})
    assert (error.file, error.line) == (str(path), 5)
    assert "unsafe" in str(error) and "__class__" in str(error)


def test_sandbox_blocks_code_execution_through_globals(write: Write, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write("exec", f"""\
        model: local
        messages:
          - role: user
            content: "{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}"
        """)
    with pytest.raises(PromptRenderError, match="unsafe"):
        PromptSpec.load(path).render()
    assert not marker.exists()


@pytest.mark.parametrize("expression", ["'x' * 10000000", "[1] * 10000000", "10 ** 100000"])
def test_memory_bombs_are_refused(write: Write, expression: str) -> None:
    spec = PromptSpec.load(write("bomb", f'model: local\nmessages: [{{role: user, content: "{{{{ {expression} }}}}"}}]\n'))
    with pytest.raises(PromptRenderError, match="limit"):
        spec.render()


def test_runtime_errors_in_templates_become_render_errors(write: Write) -> None:
    path = write("zero", "model: local\ninput: {n: integer}\nmessages:\n  - role: user\n    content: '{{ 1 / n }}'\n")
    error = render_error(PromptSpec.load(path), {"n": 0})
    assert (error.file, error.line) == (str(path), 5)
    assert "ZeroDivisionError" in str(error)
