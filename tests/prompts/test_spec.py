"""Loading prompt files: the format, and every way a file can be wrong, at its exact position."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.errors import PromptError, PromptNotFound, PromptRenderError
from keel.prompts import PromptSpec

from .conftest import Write


def load_error(path: Path) -> PromptError:
    with pytest.raises(PromptError) as info:
        PromptSpec.load(path)
    return info.value


def test_the_documented_example_loads(prompts_dir: Path) -> None:
    spec = PromptSpec.load(prompts_dir / "summarize.prompt.yaml")
    assert spec.name == "summarize"
    assert spec.model == "local"
    assert spec.params == {"temperature": 0, "max_tokens": 200, "seed": 7, "stop": ["\n\n"]}
    assert spec.input["text"] == {"type": "string"}
    assert spec.input["bullets"]["default"] == 3
    assert spec.output is not None and spec.output["required"] == ["bullets"]
    assert [m.role for m in spec.messages] == ["system", "user"]
    assert spec.tags == ["summaries"]
    assert spec.partials == {"tone.j2": "Be brief and neutral."}
    assert spec.path == prompts_dir / "summarize.prompt.yaml"
    fmt = spec.response_format()
    assert fmt is not None and fmt.json_schema is not None and fmt.json_schema.schema_ == spec.output


def test_a_matching_name_key_is_allowed(write: Write) -> None:
    path = write("greet", "name: greet\nmodel: local\nmessages: [{role: user, content: hi}]\n")
    assert PromptSpec.load(path).name == "greet"


def test_a_name_key_that_differs_from_the_file_name(write: Write) -> None:
    error = load_error(write("greet", "model: local\nname: hello\nmessages: [{role: user, content: hi}]\n"))
    assert (error.file, error.line, error.column) == (str(error.file), 2, 7)
    assert "'hello' does not match the file name 'greet'" in str(error)


def test_invalid_yaml_names_file_line_and_column(write: Write) -> None:
    path = write("broken", """\
        model: local
        messages:
          - role: user
            content: {unclosed
        tags: [a]
        """)
    error = load_error(path)
    assert error.file == str(path)
    assert (error.line, error.column) == (5, 5)
    assert str(error).startswith(f"{path}:5:5: invalid YAML: ")
    assert "flow mapping" in str(error)


def test_unknown_top_level_key_is_named_with_the_allowed_ones(write: Write) -> None:
    path = write("extra", "model: local\ntemperature: 0\nmessages: [{role: user, content: hi}]\n")
    error = load_error(path)
    assert (error.line, error.column, error.key) == (2, 1, "temperature")
    assert str(error) == (
        f"{path}:2:1: unknown key 'temperature' in the prompt file; allowed keys: "
        "name, description, model, params, input, output, messages, tags, reference_input."
    )


@pytest.mark.parametrize("missing", ["model", "messages"])
def test_missing_required_key_is_named(write: Write, missing: str) -> None:
    lines = {"model": "model: local\n", "messages": "messages: [{role: user, content: hi}]\n"}
    path = write("partial", "description: d\n" + "".join(v for k, v in lines.items() if k != missing))
    error = load_error(path)
    assert f"missing required key {missing!r}" in str(error)
    assert str(error).startswith(f"{path}:1:1: ")


def test_wrong_role_is_named_at_its_line(write: Write) -> None:
    path = write("roles", """\
        model: local
        messages:
          - role: user
            content: hi
          - role: bot
            content: hi
        """)
    error = load_error(path)
    assert (error.line, error.column) == (5, 5)
    assert "messages[1].role" in str(error) and "'bot'" in str(error) and "'assistant'" in str(error)


def test_unknown_message_key(write: Write) -> None:
    path = write("msg", "model: local\nmessages:\n  - role: user\n    text: hi\n")
    error = load_error(path)
    assert (error.line, error.column) == (4, 5)
    assert "unknown key 'text' in messages[0]; allowed keys: role, content, name." in str(error)


def test_empty_messages_and_wrong_types(write: Write) -> None:
    error = load_error(write("empty", "model: local\nmessages: []\n"))
    assert error.line == 2 and "messages" in str(error)
    error = load_error(write("typed", "model: local\ndescription: 5\nmessages: [{role: user, content: hi}]\n"))
    assert error.line == 2 and "description" in str(error)


def test_bad_input_type_name_and_bad_default(write: Write) -> None:
    error = load_error(write("t1", "model: local\ninput:\n  x: strng\nmessages: [{role: user, content: '{{ x }}'}]\n"))
    assert (error.line, error.column) == (3, 3)
    assert "unknown type name 'strng'" in str(error)
    error = load_error(write("t2", "model: local\ninput:\n  n: {type: integer, default: ten}\nmessages: [{role: user, content: '{{ n }}'}]\n"))
    assert error.line == 3 and "default does not match" in str(error)
    error = load_error(write("t3", "model: local\ninput:\n  n: {type: 12}\nmessages: [{role: user, content: '{{ n }}'}]\n"))
    assert error.line == 3 and "not a valid JSON Schema" in str(error)


def test_non_mapping_and_empty_files(write: Write) -> None:
    assert "is empty" in str(load_error(write("blank", "")))
    assert "not a mapping" in str(load_error(write("list", "- a\n- b\n")))


def test_oversized_file_is_refused(write: Write) -> None:
    path = write("huge", "model: local\nmessages: [{role: user, content: hi}]\n" + "# padding\n" * 110_000)
    error = load_error(path)
    assert "limit" in str(error) and error.file == str(path)


@pytest.mark.parametrize(
    ("body", "line", "column", "words"),
    [
        ("!!python/object/apply:os.system ['touch pwned']\n", 1, 1, "not allowed"),
        ("model: !!python/name:os.system local\nmessages: []\n", 1, 8, "not allowed"),
        ("model: local\nmessages:\n  - &m {role: user, content: hi}\n  - *m\n", 4, 5, "aliases are not supported"),
        ("model: local\nmodel: other\nmessages: []\n", 2, 1, "duplicate key 'model'"),
        ("model: local\ntags: [2024-01-01]\nmessages: []\n", 2, 8, "timestamp"),
        ("model: local\nparams: {temperature: .nan}\nmessages: []\n", 2, 23, "finite"),
        ("model: local\nparams: {1: a}\nmessages: []\n", 2, 10, "keys must be strings"),
    ],
)
def test_hostile_or_non_json_yaml_is_refused(write: Write, tmp_path: Path, body: str, line: int, column: int, words: str) -> None:
    error = load_error(write("hostile", body))
    assert (error.line, error.column) == (line, column)
    assert words in str(error)
    assert not (tmp_path / "pwned").exists()


def test_template_syntax_error_names_file_line_and_jinja_message(write: Write) -> None:
    path = write("syntax", """\
        model: local
        messages:
          - role: user
            content: |
              line one
              {% if x %}
              never closed
              {{ x }
        input: {x: boolean}
        """)
    with pytest.raises(PromptRenderError) as info:
        PromptSpec.load(path)
    assert (info.value.file, info.value.line) == (str(path), 8)
    assert str(info.value) == f"{path}:8: template syntax error: unexpected '}}'"
    # Jinja points an unclosed block at the line that opened it.
    path.write_text(path.read_text().replace("      {{ x }\n", ""))
    with pytest.raises(PromptRenderError, match="Unexpected end of template") as info:
        PromptSpec.load(path)
    assert info.value.line == 6


def test_syntax_error_in_a_partial_names_the_partial(write: Write, prompts_dir: Path) -> None:
    (prompts_dir / "partials" / "bad.j2").write_text("ok\n{{ broken(\n")
    write("p", "model: local\nmessages: [{role: user, content: \"{% include 'bad.j2' %}\"}]\n")
    with pytest.raises(PromptRenderError) as info:
        PromptSpec.load(prompts_dir / "p.prompt.yaml")
    assert (info.value.file, info.value.line) == (str(prompts_dir / "partials" / "bad.j2"), 2)


def test_missing_partial_names_the_partial_and_the_folder(write: Write, prompts_dir: Path) -> None:
    path = write("p", """\
        model: local
        messages:
          - role: user
            content: |
              intro
              {% include 'nowhere.j2' %}
        """)
    with pytest.raises(PromptRenderError) as info:
        PromptSpec.load(path)
    error = info.value
    assert (error.partial, error.folder, error.file, error.line) == ("nowhere.j2", str(prompts_dir / "partials"), str(path), 6)
    assert str(error) == f"{path}:6: partial 'nowhere.j2' not found in {prompts_dir / 'partials'}/."


def test_partials_cannot_escape_their_folder(write: Write, prompts_dir: Path) -> None:
    (prompts_dir / "secret.txt").write_text("secret")
    path = write("p", "model: local\nmessages: [{role: user, content: \"{% include '../secret.txt' %}\"}]\n")
    with pytest.raises(PromptRenderError, match="not found"):
        PromptSpec.load(path)
    (prompts_dir / "partials" / "link.j2").symlink_to(prompts_dir / "secret.txt")
    path = write("p", "model: local\nmessages: [{role: user, content: \"{% include 'link.j2' %}\"}]\n")
    with pytest.raises(PromptRenderError, match="not found"):
        PromptSpec.load(path)


def test_dynamic_include_is_refused(write: Write) -> None:
    path = write("dyn", "model: local\ninput: {p: string}\nmessages:\n  - role: user\n    content: \"{% include p %}\"\n")
    with pytest.raises(PromptRenderError, match="string literals") as info:
        PromptSpec.load(path)
    assert info.value.line == 5


def test_undeclared_template_variable_is_refused_at_load(write: Write) -> None:
    path = write("undeclared", """\
        model: local
        input: {name: string}
        messages:
          - role: user
            content: |
              Hello {{ name }},
              you owe {{ amount }}.
        """)
    with pytest.raises(PromptRenderError) as info:
        PromptSpec.load(path)
    assert (info.value.variable, info.value.line) == ("amount", 7)
    assert "declared: name" in str(info.value)


def test_loop_and_set_variables_are_not_inputs(write: Write) -> None:
    path = write("loops", """\
        model: local
        input: {items: {type: array, items: {type: string}}}
        messages:
          - role: user
            content: |
              {% set sep = ", " %}{% for item in items %}{{ loop.index }}. {{ item }}{{ sep }}{% endfor %}
        """)
    assert PromptSpec.load(path).render({"items": ["a", "b"]})[0]["content"] == "1. a, 2. b, \n"


def test_from_definition_round_trips_the_version(prompts_dir: Path) -> None:
    spec = PromptSpec.load(prompts_dir / "summarize.prompt.yaml")
    again = PromptSpec.from_definition("summarize", spec.definition())
    assert again.version == spec.version
    assert again.render({"text": "t"}) == spec.render({"text": "t"})
    assert again.path is None


def test_a_spec_built_in_code_renders_and_has_a_version() -> None:
    spec = PromptSpec(name="inline", model="local", input={"x": "integer"}, messages=[{"role": "user", "content": "{{ x + 1 }}"}])
    assert spec.render({"x": 1}) == [{"role": "user", "content": "2"}]
    assert spec.version == PromptSpec.from_definition("inline", spec.definition()).version
    with pytest.raises(PromptRenderError, match=r"^<prompt inline> messages\[0\]:1: missing variable 'x'"):
        spec.render()


def test_loading_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PromptNotFound, match="no such prompt file"):
        PromptSpec.load(tmp_path / "nope.prompt.yaml")


def test_the_example_in_the_package_docs_is_valid(tmp_path: Path, prompts_dir: Path) -> None:
    import textwrap

    import keel.prompts

    doc = keel.prompts.__doc__ or ""
    example = textwrap.dedent(doc.split("::\n", 1)[1].split("\nKeys (", 1)[0])
    path = prompts_dir / "documented.prompt.yaml"
    path.write_text(example)
    assert PromptSpec.load(path).definition() == PromptSpec.load(prompts_dir / "summarize.prompt.yaml").definition()
