"""The extractor registry and the plugin-manager factory.

Nothing here runs at import time: :func:`get_plugin_manager` builds a fresh
``pluggy.PluginManager`` and loads entry points only when called, and :func:`load_registry`
asks every plugin to register its extractors.

Environment variables (read when the manager is built):

``FACEFEAT_PLUGINS_BLOCK``
    Comma-separated entry-point names never to load, e.g. ``face_descriptor,my_plugin``.
``FACEFEAT_PLUGINS_ALLOW``
    Comma-separated entry-point names; when set, only these are loaded.
"""

from __future__ import annotations

import copy
import importlib.metadata
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import jsonschema
import pluggy

from facefeat.engine import hookspecs
from facefeat.engine.extractor import Extractor
from facefeat.errors import ConfigError, PluginError

ENTRY_POINT_GROUP = "facefeat"
ENV_BLOCK = "FACEFEAT_PLUGINS_BLOCK"
ENV_ALLOW = "FACEFEAT_PLUGINS_ALLOW"

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def _split_env(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def get_plugin_manager(
    *,
    entry_points: bool = True,
    plugins: Iterable[object] = (),
    env: Mapping[str, str] | None = None,
) -> pluggy.PluginManager:
    """Build the plugin manager: hookspecs, entry-point plugins, then ``plugins`` given here.

    Parameters
    ----------
    entry_points : bool, default True
        Load plugins from the ``facefeat`` entry-point group (built-ins included).
    plugins : iterable of objects
        Extra plugin objects or modules to register (tests, notebooks).
    env : mapping, optional
        Environment to read ``FACEFEAT_PLUGINS_BLOCK`` / ``FACEFEAT_PLUGINS_ALLOW`` from;
        defaults to ``os.environ``.

    Raises
    ------
    PluginError
        A plugin implements a ``facefeat_*`` hook that does not exist (typo, or a plugin
        written for a newer facefeat).
    """
    env = os.environ if env is None else env
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    if entry_points:
        for name in _split_env(env.get(ENV_BLOCK)):
            pm.set_blocked(name)
        allow = _split_env(env.get(ENV_ALLOW))
        names = sorted({ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)})
        for name in names:
            if allow and name not in allow:
                continue
            # One entry point at a time, so a broken plugin is named in the error.
            try:
                pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)
            except Exception as exc:
                raise PluginError(
                    f"plugin {name!r} (entry point group {ENTRY_POINT_GROUP!r}) failed to load: "
                    f"{type(exc).__name__}: {exc}. Fix or uninstall it, or skip it with {ENV_BLOCK}={name}"
                ) from exc
    for plugin in plugins:
        pm.register(plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"{exc}. A plugin implements a hook facefeat does not define; check its spelling "
            f"(the only hook is 'facefeat_register') or upgrade facefeat. "
            f"Block the plugin with {ENV_BLOCK}=<entry point name> to run without it."
        ) from exc
    return pm


@dataclass(frozen=True)
class ExtractorInfo:
    """A registered extractor class and where it came from."""

    cls: type[Extractor]
    plugin: str
    distribution: str
    distribution_version: str

    @property
    def name(self) -> str:
        return self.cls.name

    @property
    def version(self) -> str:
        return self.cls.version


class Registry:
    """Extractor classes by name, filled through the ``facefeat_register`` hook.

    Parameters
    ----------
    plugin_manager : pluggy.PluginManager, optional
        Used to attribute each extractor to its plugin and distribution (provenance).
    """

    def __init__(self, plugin_manager: pluggy.PluginManager | None = None) -> None:
        self._pm = plugin_manager
        self._extractors: dict[str, ExtractorInfo] = {}

    # -- registration -----------------------------------------------------------------
    def add_extractor(self, cls: type[Extractor]) -> None:
        """Register an extractor class after checking its declaration.

        Raises
        ------
        PluginError
            Not an :class:`Extractor` subclass, a malformed ``name`` / ``version`` /
            ``config_schema``, or a name that is already taken.
        """
        where = f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls)!s}"
        if not (isinstance(cls, type) and issubclass(cls, Extractor)):
            raise PluginError(f"{where}: registry.add_extractor() needs a facefeat Extractor subclass")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise PluginError(f"{where}: extractor name {name!r} must match {_NAME_RE.pattern}")
        if not isinstance(getattr(cls, "version", None), str) or not cls.version:
            raise PluginError(f"{where}: extractor {name!r} needs a non-empty string 'version'")
        try:
            jsonschema.Draft202012Validator.check_schema(cls.config_schema)
        except jsonschema.SchemaError as exc:
            raise PluginError(f"{where}: config_schema of {name!r} is not a valid JSON Schema: {exc.message}") from exc
        if cls.config_schema.get("type") != "object":
            raise PluginError(f"{where}: config_schema of {name!r} must be of type 'object'")
        if name in self._extractors:
            other = self._extractors[name]
            raise PluginError(
                f"{where}: extractor name {name!r} is already registered by plugin {other.plugin!r} "
                f"({other.distribution} {other.distribution_version}); rename one of them or block "
                f"a plugin with {ENV_BLOCK}"
            )
        plugin, dist, dist_version = self._attribute(cls)
        self._extractors[name] = ExtractorInfo(cls, plugin, dist, dist_version)

    def _attribute(self, cls: type) -> tuple[str, str, str]:
        """Find the plugin (and its distribution) whose module defines ``cls``.

        The plugin module itself wins; otherwise a plugin whose package contains the class's
        module (a plugin module that imports its extractor from a sibling module).
        """
        if self._pm is None:
            return "<direct>", "", ""
        dists = {id(p): d for p, d in self._pm.list_plugin_distinfo()}
        module = cls.__module__
        exact, related = None, None
        for name, plugin in self._pm.list_name_plugin():
            pmod = getattr(plugin, "__name__", None) or getattr(type(plugin), "__module__", "")
            package = pmod.rsplit(".", 1)[0]
            if module == pmod:
                exact = (name, plugin)
            elif related is None and (module.startswith(package + ".") or module == package):
                related = (name, plugin)
        found = exact or related
        if found is None:
            return "<unknown>", "", ""
        dist = dists.get(id(found[1]))
        return (found[0], getattr(dist, "project_name", "") if dist else "", getattr(dist, "version", "") if dist else "")

    # -- lookup -----------------------------------------------------------------------
    def names(self) -> list[str]:
        """Registered extractor names, sorted."""
        return sorted(self._extractors)

    def __contains__(self, name: str) -> bool:
        return name in self._extractors

    def info(self, name: str) -> ExtractorInfo:
        """The :class:`ExtractorInfo` of ``name``.

        Raises
        ------
        ConfigError
            Unknown name; the message lists the registered ones.
        """
        try:
            return self._extractors[name]
        except KeyError:
            known = ", ".join(self.names()) or "(none: is facefeat installed, or are plugins blocked?)"
            raise ConfigError(
                f"unknown extractor {name!r}; registered extractors: {known}. "
                f"Run 'facefeat plugins' to list them with their distributions."
            ) from None

    def resolve_config(self, name: str, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Validate ``config`` against the extractor's schema and fill in defaults.

        Raises
        ------
        ConfigError
            Naming the extractor, the key, the bad value and what is allowed.
        """
        cls = self.info(name).cls
        return validate_config(cls.config_schema, config or {}, where=f"extractor {name!r}", prefix=name)

    def create(self, name: str, config: Mapping[str, Any] | None = None) -> Extractor:
        """Instantiate extractor ``name`` with a validated, defaults-filled config."""
        info = self.info(name)
        extractor = info.cls(self.resolve_config(name, config))
        extractor._facefeat_info = info  # plugin and distribution, for provenance
        return extractor


def validate_config(schema: Mapping[str, Any], config: Mapping[str, Any], *, where: str, prefix: str = "") -> dict[str, Any]:
    """Fill top-level defaults from ``schema`` into ``config`` and validate the result.

    Parameters
    ----------
    schema : mapping
        A JSON Schema of type object.
    config : mapping
        User values.
    where : str
        Names the config in messages (``"extractor 'stylegan2'"``, a file name).
    prefix : str
        Dotted key prefix used in messages, so users see the key as they would write it in
        ``-s key=value``.

    Raises
    ------
    ConfigError
    """
    resolved = copy.deepcopy(dict(config))
    for key, prop in schema.get("properties", {}).items():
        if key not in resolved and isinstance(prop, dict) and "default" in prop:
            resolved[key] = copy.deepcopy(prop["default"])
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(resolved), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [_explain(e, schema, prefix) for e in errors]
        raise ConfigError(f"invalid config for {where}:\n  " + "\n  ".join(lines))
    return resolved


def _explain(error: jsonschema.ValidationError, schema: Mapping[str, Any], prefix: str) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    key = ".".join(p for p in (prefix, path) if p)
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        return f"unknown key(s) {', '.join(repr(f'{prefix}.{x}' if prefix else x) for x in extra)}; allowed keys: {', '.join(allowed)}"
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [m for m in error.validator_value if m not in error.instance]
        props = schema.get("properties", {}) if not path else {}
        parts = []
        for m in missing:
            name = ".".join(p for p in (key, m) if p)
            desc = props.get(m, {}).get("description") if isinstance(props.get(m), dict) else None
            parts.append(f"{name} is required" + (f" ({desc})" if desc else "") + f"; set it, e.g. -s {name}=...")
        return "; ".join(parts)
    if error.validator == "enum":
        return f"{key} = {error.instance!r} is not allowed; allowed values: {', '.join(map(repr, error.validator_value))}"
    if error.validator == "type":
        return f"{key} = {error.instance!r} must be of type {error.validator_value}"
    if error.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"{key} = {error.instance!r}: {error.message}"
    return f"{key or '(config)'}: {error.message}"


def load_registry(pm: pluggy.PluginManager | None = None) -> Registry:
    """Build a registry from a plugin manager (a fresh one by default)."""
    pm = pm or get_plugin_manager()
    registry = Registry(pm)
    pm.hook.facefeat_register(registry=registry)
    return registry
