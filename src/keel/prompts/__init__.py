"""Prompts as code: prompt files, strict rendering, content-hash versions and the lockfile.

Prompt files
------------
Each prompt is a file `prompts/NAME.prompt.yaml` in the project; its name is the file name
without `.prompt.yaml` (letters, digits, `_`, `.`, `-`). Reusable pieces of template live in
`prompts/partials/` and are pulled in with `{% include 'file.j2' %}`::

    description: Summarize a text in N bullet points
    model: local                 # a model alias from keel.toml, or "provider/model-id"
    params: {temperature: 0, max_tokens: 200, seed: 7, stop: ["\\n\\n"]}
    input:                       # typed variables: JSON Schema per variable, or a short type name
      text: string
      bullets: {type: integer, minimum: 1, maximum: 10, default: 3}
    output:                      # optional JSON Schema of the answer
      type: object
      properties: {bullets: {type: array, items: {type: string}}}
      required: [bullets]
    messages:
      - role: system
        content: "{% include 'tone.j2' %}"     # partials from prompts/partials/
      - role: user
        content: |
          Summarize in {{ bullets }} bullets:
          {{ text }}
    tags: [summaries]
    reference_input: {text: "Keel pins prompts and models.", bullets: 2}   # used for lockfile token counts

Keys (any other key is an error):

  model            required. An alias from keel.toml or `provider/model-id`.
  messages         required. A list of `{role, content, name?}`; role is system, developer, user or
                   assistant; content is a Jinja2 template.
  description      text for people.
  params           request parameters (temperature, max_tokens, seed, stop, …), sent as given.
  input            the variables the templates may use. Each is a JSON Schema or one of the short
                   names string, integer, number, boolean, array, object, null. A variable with a
                   `default` is optional; the others are required. Templates may read only declared
                   variables (checked when the file is loaded).
  output           a JSON Schema the answer must follow (see `PromptSpec.response_format()`).
  tags             a list of strings.
  reference_input  variables for a typical call; the lockfile records its token count.
  name             optional; if present it must equal the file name.

Files are plain data: YAML anchors/aliases, tags, timestamps and duplicate keys are refused, and
files are limited to 1 MB. Templates run in Jinja2's immutable sandbox (no unsafe attributes, no
changing the variables passed in) with strict undefined values, no autoescaping and trailing
newlines kept. Include names must be string literals; partials are read when the prompt is loaded.
Use `|` block scalars for multi-line templates so that error lines match the file exactly.

Errors
------
`PromptError` for a file that is not valid (YAML syntax with line and column, unknown or missing
keys, a wrong role, a bad schema); `PromptRenderError` (a `PromptError`) for anything about
templates and variables: syntax errors, missing partials, undeclared, missing, unknown or
ill-typed variables, and failures inside a template. Each names the file and line.
`PromptNotFound` names the folder searched and suggests close names.

Versions
--------
`spec.version` is the sha256 of the canonical JSON of `spec.definition()`: the parsed definition
(short type names expanded, default values left out, `name` left out) plus the text of every partial
it includes. Reformatting the YAML does not change it; editing a template, a partial, the model,
params or schemas does. `spec.short_version` is the first 12 characters.

The lockfile
------------
`keel.lock` records, per prompt, the locked version, the model identity, params, reference token
count, baseline eval run and time (see `keel.prompts.lockfile`). Writers use `update(path, fn)` or
`with editing(path) as lock:`, which serialize on the sidecar `keel.lock.lock` (keep that one out
of version control). `compare()` / `compare_all()` report drift between the files on disk, the
models their aliases resolve to now, and the lock.

API
---
    PromptLibrary(root).names() / .get(name) -> PromptSpec          (reloads edited files)
    PromptSpec.load(path) / PromptSpec.from_definition(name, definition)
    spec.render(variables) / spec.render_reference() -> list[dict]   (OpenAI-shaped messages)
    spec.version / spec.short_version / spec.definition() / spec.response_format()
    Lockfile.read(path) / lock.set(name, LockEntry(...)) / lock.remove(name) / lock.write(path)
    update(path, fn) / editing(path)
    compare(spec, entry, model=None, params=None) / compare_all(library, lock, resolve=None)
    diff_definitions(old, new) / diff_templates(old, new) / diff_rendered(old, new) / diff_text(a, b)
"""

from .diff import (
    diff_definitions as diff_definitions,
    diff_rendered as diff_rendered,
    diff_templates as diff_templates,
    diff_text as diff_text,
)
from .drift import Drift as Drift, compare as compare, compare_all as compare_all
from .library import PromptLibrary as PromptLibrary
from .lockfile import (
    LOCKFILE_NAME as LOCKFILE_NAME,
    LockEntry as LockEntry,
    Lockfile as Lockfile,
    ModelIdentity as ModelIdentity,
    editing as editing,
    update as update,
)
from .spec import PROMPT_SUFFIX as PROMPT_SUFFIX, PromptMessage as PromptMessage, PromptSpec as PromptSpec
from .version import canonical_json as canonical_json, content_hash as content_hash
