"""Exceptions raised for per-run problems.

Per-image problems never raise: they become rows with a ``status`` (see
:mod:`facefeat.io.tables`). Per-run problems (bad config, missing model file, malformed
clinical table, ids that do not match) raise a :class:`FacefeatError` subclass whose message
names the file, the field or row, and the fix.
"""

from __future__ import annotations


class FacefeatError(Exception):
    """Base class of every error facefeat raises on purpose."""


class ConfigError(FacefeatError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


class InputError(FacefeatError, ValueError):
    """An input folder, manifest or table is missing or malformed."""


class ModelError(FacefeatError):
    """A model file is missing, corrupt, of the wrong format or does not match its config."""


class PluginError(FacefeatError):
    """A plugin is broken: duplicate extractor name, bad declaration, unknown hook."""


class DataError(FacefeatError, ValueError):
    """A clinical or feature table cannot be used as given (survival modelling)."""


class DeviceError(FacefeatError, RuntimeError):
    """The compute device failed during a run (lost GPU, driver error); the message says what
    finished work is kept and how to go on."""
