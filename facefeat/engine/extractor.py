"""The extractor contract every plugin implements.

An extractor turns a batch of detected, landmarked and aligned faces into one
``pyarrow.RecordBatch`` of feature columns, one row per face in the batch, in order. The engine
owns everything else: decoding, detection, alignment, key columns, status rows, provenance,
writing and resuming. Extractors stay thin; the science lives in the library modules.

Column naming (checked by the registry, PyRadiomics-style parseable names):

- features: ``<extractor>__<feature>``, e.g. ``landmarks__eye_aspect_ratio_left``;
- extractor diagnostics: ``diag__<extractor>__<name>``, e.g. ``diag__stylegan2__psnr``.

Embeddings are ``pa.list_(pa.float32(), n)`` fixed-size list columns whose field metadata holds
``b"shape"`` (a JSON list such as ``[18, 512]``); see :func:`embedding_field`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class Requires:
    """What an extractor needs from the engine's preprocessing.

    Attributes
    ----------
    aligned_sizes : tuple of int
        FFHQ-aligned crops wanted, by output size (e.g. ``(256,)``).
    landmarks : bool
        Whether the 68 landmarks (original-image coordinates) are needed.
    original : bool
        Whether the upright RGB original image is needed (kept in memory only when asked).
    """

    aligned_sizes: tuple[int, ...] = ()
    landmarks: bool = True
    original: bool = False


@dataclass
class Face:
    """One image's face after preprocessing, as handed to extractors.

    Attributes
    ----------
    image_id : str
        sha256 of the file bytes.
    subject_id : str
        Subject the photo belongs to.
    landmarks : ndarray of shape (68, 2), float64
        68 points in iBUG 300-W order, original-image pixel coordinates.
    box : tuple of int
        Detector rectangle ``(left, top, right, bottom)``, dlib-inclusive.
    aligned : dict
        Output size -> aligned RGB crop ``uint8 (size, size, 3)``.
    original : ndarray or None
        Upright RGB original ``uint8 (H, W, 3)`` when the extractor required it.
    """

    image_id: str
    subject_id: str
    landmarks: np.ndarray
    box: tuple[int, int, int, int]
    aligned: dict[int, np.ndarray] = field(default_factory=dict)
    original: np.ndarray | None = None


@dataclass
class FaceBatch:
    """A batch of faces; ``extract`` must return exactly ``len(batch)`` rows in this order."""

    faces: list[Face]

    def __len__(self) -> int:
        return len(self.faces)

    def __iter__(self):
        return iter(self.faces)

    def aligned(self, size: int) -> np.ndarray:
        """Stack the aligned crops of one size into ``uint8 (B, size, size, 3)``."""
        return np.stack([f.aligned[size] for f in self.faces])

    def landmarks(self) -> np.ndarray:
        """Stack the landmarks into ``float64 (B, 68, 2)``."""
        return np.stack([f.landmarks for f in self.faces])


def embedding_field(name: str, shape: Sequence[int], description: str = "") -> pa.Field:
    """A fixed-size float32 list field with its logical shape in the field metadata."""
    n = int(np.prod(shape))
    meta = {b"shape": json.dumps(list(shape)).encode()}
    if description:
        meta[b"description"] = description.encode()
    return pa.field(name, pa.list_(pa.float32(), n), metadata=meta)


def embedding_array(values: np.ndarray) -> pa.FixedSizeListArray:
    """Turn ``(B, ...)`` float values into a fixed-size list array of float32 rows."""
    values = np.ascontiguousarray(values, dtype=np.float32).reshape(len(values), -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])


class Extractor:
    """Base class of extractors. Subclass it, set the class attributes, implement the methods.

    Class attributes
    ----------------
    name : str
        Stable identifier, ``[a-z][a-z0-9_]*``; the table is ``<name>.parquet`` and every
        feature column starts with ``<name>__``.
    version : str
        Version of the extractor's definition; bump it whenever outputs change.
    config_schema : dict
        JSON Schema (draft 2020-12) of the extractor's config, an ``object`` whose properties
        carry ``default`` values. Validated before any work starts.

    Parameters
    ----------
    config : dict
        The validated config with defaults filled in (the engine does that; see
        :meth:`facefeat.engine.registry.Registry.create`).
    """

    name: ClassVar[str]
    version: ClassVar[str]
    config_schema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}, "additionalProperties": False}

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = dict(config or {})

    # -- declarations -------------------------------------------------------------------
    def requires(self) -> Requires:
        """What this extractor needs from preprocessing (may depend on ``self.config``)."""
        return Requires()

    def output_schema(self) -> pa.Schema:
        """Arrow schema of the feature and ``diag__<name>__*`` columns ``extract`` returns."""
        raise NotImplementedError

    def model_files(self) -> dict[str, str]:
        """Model files this extractor reads, ``label -> path``; their sha256 go to provenance."""
        return {}

    # -- work ---------------------------------------------------------------------------
    def load(self, device: str = "cpu") -> None:
        """Load weights onto ``device``. Called once, lazily, before the first ``extract``."""

    def extract(self, batch: FaceBatch) -> pa.RecordBatch:
        """Compute features for every face of ``batch``, one row each, in order."""
        raise NotImplementedError
