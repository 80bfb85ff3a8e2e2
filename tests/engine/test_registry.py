"""Plugin host: discovery through entry points, naming rules, config validation, env control."""

import pyarrow as pa
import pytest

from facefeat.engine import Extractor, hookimpl
from facefeat.engine.registry import Registry, get_plugin_manager, load_registry
from facefeat.errors import ConfigError, PluginError


class Good(Extractor):
    name = "good"
    version = "1.0"
    config_schema = {"type": "object", "additionalProperties": False,
                     "properties": {"mode": {"enum": ["a", "b"], "default": "a"},
                                    "steps": {"type": "integer", "minimum": 1, "default": 10}}}

    def output_schema(self):
        return pa.schema([pa.field("good__x", pa.float64())])


def test_builtins_are_discovered_through_entry_points():
    registry = load_registry()
    assert {"landmarks", "face_descriptor"} <= set(registry.names())
    info = registry.info("landmarks")
    assert info.plugin == "landmarks"
    assert info.distribution == "facefeat"


def test_block_and_allow_by_environment():
    pm = get_plugin_manager(env={"FACEFEAT_PLUGINS_BLOCK": "face_descriptor"})
    names = load_registry(pm).names()
    assert "face_descriptor" not in names and "landmarks" in names
    pm = get_plugin_manager(env={"FACEFEAT_PLUGINS_ALLOW": "face_descriptor"})
    assert load_registry(pm).names() == ["face_descriptor"]


def test_unknown_hook_is_detected():
    class Typo:
        @hookimpl
        def facefeat_regster(self, registry):  # misspelt hook name
            pass

    with pytest.raises(PluginError, match="facefeat_regster"):
        get_plugin_manager(entry_points=False, plugins=[Typo()])


def test_duplicate_and_bad_names_refused():
    registry = Registry()
    registry.add_extractor(Good)
    with pytest.raises(PluginError, match="already registered"):
        registry.add_extractor(Good)

    class Bad(Good):
        name = "Bad-Name"

    with pytest.raises(PluginError, match="must match"):
        registry.add_extractor(Bad)

    class BadSchema(Good):
        name = "bad_schema"
        config_schema = {"type": "object", "properties": {"x": {"type": "nonsense"}}}

    with pytest.raises(PluginError, match="not a valid JSON Schema"):
        registry.add_extractor(BadSchema)
    with pytest.raises(PluginError, match="Extractor subclass"):
        registry.add_extractor(object)


def test_config_defaults_and_errors_name_key_and_allowed_values():
    registry = Registry()
    registry.add_extractor(Good)
    assert registry.resolve_config("good", {}) == {"mode": "a", "steps": 10}
    with pytest.raises(ConfigError, match=r"good\.mode = 'z' is not allowed; allowed values: 'a', 'b'"):
        registry.resolve_config("good", {"mode": "z"})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'good\.stepz'; allowed keys: mode, steps"):
        registry.resolve_config("good", {"stepz": 3})
    with pytest.raises(ConfigError, match=r"good\.steps = 0"):
        registry.resolve_config("good", {"steps": 0})
    with pytest.raises(ConfigError, match="unknown extractor 'nope'; registered extractors: good"):
        registry.create("nope")


def test_missing_required_key_names_the_key_its_meaning_and_the_fix():
    from facefeat.engine.registry import validate_config
    from facefeat.errors import ConfigError

    schema = {"type": "object", "required": ["checkpoint"],
              "properties": {"checkpoint": {"type": "string", "description": "generator file"}}}
    with pytest.raises(ConfigError, match=r"stylegan2\.checkpoint is required \(generator file\); set it, "
                                          r"e\.g\. -s stylegan2\.checkpoint=\.\.\."):
        validate_config(schema, {}, where="extractor 'stylegan2'", prefix="stylegan2")
