"""keel.toml + KEEL_* settings: precedence and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.errors import ConfigError
from keel.settings import load_settings


def test_no_file_runs_on_embedded_defaults(project: Path) -> None:
    settings = load_settings(env={})
    assert settings.default_model == "local"
    assert settings.source is None
    assert settings.providers["local"].type == "local"
    assert settings.effective_store_url == f"sqlite:///{project / '.keel' / 'keel.db'}"


def test_file_is_found_upwards_and_env_overrides_it(project: Path) -> None:
    (project / "keel.toml").write_text('default_model = "fast"\n[models.fast]\nprovider = "fake"\nmodel = "q"\n')
    nested = project / "a" / "b"
    nested.mkdir(parents=True)
    assert load_settings(env={}, path=None).default_model == "fast"
    settings = load_settings(env={"KEEL_DEFAULT_MODEL": "local", "KEEL_PORT": "9000", "KEEL_GATEWAY_KEYS": "k1, k2"})
    assert settings.default_model == "local"
    assert settings.gateway.port == 9000
    assert settings.gateway.keys == ["k1", "k2"]
    assert settings.state_dir == project / ".keel"


def test_explicit_overrides_beat_env(project: Path) -> None:
    settings = load_settings(env={"KEEL_DEFAULT_MODEL": "a"}, default_model="b")
    assert settings.default_model == "b"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('default_model = "x"\n[gateway]\nprot = 1\n', ["keel.toml", "gateway.prot", "unknown key"]),
        ("[providers.openai]\nbase_url = 'http://x'\n", ["providers.openai.type", "missing key"]),
        ("[gateway]\nport = 'eighty'\n", ["gateway.port", "eighty"]),
        ("default_model = \n", ["invalid TOML", "line 1"]),
        ("[models.m]\nprovider='fake'\nmodel='x'\n[models.m.price]\ninput_per_mtok=-1\noutput_per_mtok=1\n", ["input_per_mtok", "greater than or equal"]),
    ],
)
def test_invalid_file_names_file_key_and_fix(project: Path, text: str, fragments: list[str]) -> None:
    (project / "keel.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(env={})
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_missing_explicit_file_and_binary_file(project: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(env={"KEEL_CONFIG": str(project / "nope.toml")})
    (project / "keel.toml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_settings(env={})


def test_local_model_env_sets_model_path(project: Path) -> None:
    settings = load_settings(env={"KEEL_LOCAL_MODEL": "/models/x.gguf"})
    assert settings.providers["local"].model_path == "/models/x.gguf"
    assert settings.providers["local"].jurisdiction == "local"  # the built-in's other values are kept
