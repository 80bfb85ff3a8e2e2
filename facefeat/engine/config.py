"""The run configuration: a YAML file, ``-s key=value`` overrides and command-line flags.

Top-level keys are run settings; a section named after an extractor holds that extractor's
config (validated against the extractor's own schema by the registry). Everything is
validated before any image is touched.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, Mapping

from facefeat.engine.executors import CLUSTER_CONFIG_SCHEMA, resolve_cluster_config
from facefeat.engine.preprocess import ALIGN_CONFIG_SCHEMA, FACE_CONFIG_SCHEMA
from facefeat.engine.registry import validate_config
from facefeat.errors import ConfigError

RUN_CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://facefeat.invalid/schemas/run_config.schema.json",
    "title": "facefeat extract run configuration",
    "type": "object",
    "properties": {
        "input": {"type": "string", "description": "folder of photos, or a CSV/Parquet manifest with subject_id and path"},
        "out": {"type": "string", "description": "output folder: one <extractor>.parquet per extractor"},
        "extractors": {"type": "array", "items": {"type": "string"}, "minItems": 1, "default": ["landmarks"]},
        "subject_from": {"enum": ["stem", "parent"], "default": "stem",
                         "description": "folder input: subject id from the file stem or the parent folder name"},
        "recursive": {"type": "boolean", "default": True},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 4096, "default": 8,
                       "description": "images per batch; also the unit of progress saved for resuming"},
        "jobs": {"type": "integer", "minimum": 1, "maximum": 256, "default": 1, "description": "local worker processes"},
        "device": {"type": "string", "pattern": "^(cpu|cuda(:[0-9]+)?|mps)$", "default": "cpu"},
        "executor": {"type": ["string", "null"], "default": None,
                     "description": "where chunks run: local (jobs processes), local:N (Dask LocalCluster), "
                                    "tcp://HOST:PORT (Dask scheduler), slurm, pbs, sge, lsf (see docs/cluster.md)"},
        "cluster": CLUSTER_CONFIG_SCHEMA,
        "cache_dir": {"type": ["string", "null"], "default": None,
                      "description": "aligned-crop cache; default <out>/.cache/aligned"},
        "paths": {"type": "boolean", "default": True,
                  "description": "write the path column; false: the tables and run.json name no input file "
                                 "(docs/tables.md, privacy)"},
        "face": FACE_CONFIG_SCHEMA,
        "align": ALIGN_CONFIG_SCHEMA,
    },
    # Extractor sections: validated by the registry against each extractor's schema.
    "additionalProperties": {"type": "object"},
    "required": ["input", "out"],
}


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Turn ``["face.detector=cnn", "stylegan2.steps=200"]`` into a nested dict.

    Values are parsed as YAML scalars (``200`` -> int, ``true`` -> bool, ``[a, b]`` -> list).
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not KEY=VALUE (example: -s face.detector=cnn)")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: cannot parse value: {exc}") from None
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override of {p!r}")
        node[parts[-1]] = value
    return out


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``extra`` over ``base`` (dicts merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or JSON) config file.

    Raises
    ------
    ConfigError
        Missing file, bad YAML, or not a mapping at the top.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys (input, out, extractors, ...)")
    return data


def resolve_run_config(config: Mapping[str, Any], *, where: str = "run config") -> dict[str, Any]:
    """Validate the run-level keys and fill defaults, including the ``face`` and ``align`` sections.

    Extractor sections are left for :meth:`Registry.resolve_config`.
    """
    config = dict(config)
    if "cluster" in config:  # first: its own messages name the section's keys
        config["cluster"] = resolve_cluster_config(config["cluster"], where=where)
    if isinstance(config.get("extractors"), str):
        config["extractors"] = [e.strip() for e in config["extractors"].split(",") if e.strip()]
    resolved = validate_config(RUN_CONFIG_SCHEMA, config, where=where)
    for section, schema in (("face", FACE_CONFIG_SCHEMA), ("align", ALIGN_CONFIG_SCHEMA)):
        resolved[section] = validate_config(schema, resolved.get(section, {}), where=where, prefix=section)
    if len(set(resolved["extractors"])) != len(resolved["extractors"]):
        raise ConfigError(f"{where}: extractors lists a name twice: {resolved['extractors']}")
    return resolved
