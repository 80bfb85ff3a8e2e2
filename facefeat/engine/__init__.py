"""Plugin host: hookspecs, registry, manager factory, extractor contract and runs."""

from facefeat.engine.extractor import Extractor, Face, FaceBatch, Requires, embedding_array, embedding_field
from facefeat.engine.hookspecs import hookimpl, hookspec

__all__ = [
    "Extractor",
    "Face",
    "FaceBatch",
    "Requires",
    "embedding_array",
    "embedding_field",
    "hookimpl",
    "hookspec",
]
