"""What the generator-based extractors (``stylegan2``, ``e4e``) share.

Both render a latent code through a StyleGAN2 generator and report how well the rendering
reproduces the aligned crop. This module holds, once: the JSON-Schema property helper, the
``diag__<name>__*`` fields with their unit/range/description metadata, the LPIPS and
reconstruction-folder settings checks, the model-file listing of a generator, the record
batch assembly (null columns where a diagnostic is absent), and atomic PNG writing of the
reconstructions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow as pa

from facefeat.io.atomic import atomic_output
from facefeat.errors import ConfigError

#: ``diag__<extractor>__<name>``: (arrow type, unit, range, description).
Diagnostics = Mapping[str, tuple[pa.DataType, str, list, str]]


def prop(type_: Any, default: Any, description: str, **kw: Any) -> dict[str, Any]:
    """A JSON-Schema property with a default and a description."""
    return {"type": type_, "default": default, "description": description, **kw}


def check_reconstruction_config(config: Mapping[str, Any], name: str) -> None:
    """LPIPS weight files come in pairs; saving reconstructions needs a folder.

    Raises
    ------
    ConfigError
        Naming the keys as users write them (``<name>.lpips_vgg16``).
    """
    if bool(config["lpips_vgg16"]) != bool(config["lpips_lin"]):
        raise ConfigError(f"{name}.lpips_vgg16 and {name}.lpips_lin go together: set both or neither")
    if config["save_reconstructions"] and not config["reconstructions_dir"]:
        raise ConfigError(f"{name}.save_reconstructions needs {name}.reconstructions_dir (a folder, e.g. next to "
                          "the output table)")


def diagnostic_fields(name: str, diagnostics: Diagnostics, *, save_reconstructions: bool) -> list[pa.Field]:
    """The ``diag__<name>__*`` fields (and the reconstruction path column when PNGs are saved)."""
    fields = []
    for key, (typ, unit, rng, desc) in diagnostics.items():
        meta = {b"unit": unit.encode(), b"range": json.dumps(rng).encode(), b"description": desc.encode()}
        fields.append(pa.field(f"diag__{name}__{key}", typ, metadata=meta))
    if save_reconstructions:
        fields.append(pa.field(f"diag__{name}__reconstruction", pa.string(),
                               metadata={b"description": b"path of the reconstruction PNG"}))
    return fields


def generator_files(checkpoint: str, key: str) -> dict[str, str]:
    """``{key: file}`` of a generator path or registry name (facefeat format: weights and config)."""
    from facefeat.models.registry import resolve_model
    from facefeat.models.stylegan2.formats import facefeat_paths

    path = resolve_model(checkpoint)
    if path.suffix in (".json", ".safetensors"):
        weights, cfg = facefeat_paths(path)
        return {key: str(weights), f"{key}_config": str(cfg)}
    return {key: str(path)}


def lpips_files(config: Mapping[str, Any]) -> dict[str, str]:
    """The LPIPS weight files of a config, for the run's model hashes ({} when unset)."""
    if not config["lpips_vgg16"]:
        return {}
    return {"lpips_vgg16": str(config["lpips_vgg16"]), "lpips_lin": str(config["lpips_lin"])}


def write_png_atomic(array: np.ndarray, path: Path) -> None:
    """Write an RGB uint8 image as PNG through a temporary file (no half-written PNG after a crash)."""
    from PIL import Image

    with atomic_output(path) as tmp:
        Image.fromarray(array, "RGB").save(tmp, format="PNG")


def save_reconstructions(folder: str | Path, image_ids: Iterable[str], images: np.ndarray) -> list[str]:
    """Write ``<folder>/<image_id>.png`` for each uint8 ``[N, H, W, 3]`` image; returns the paths."""
    folder = Path(folder)
    paths = []
    for image_id, img in zip(image_ids, images):
        p = folder / f"{image_id}.png"
        write_png_atomic(img, p)
        paths.append(str(p))
    return paths


def record_batch(schema: pa.Schema, columns: Mapping[str, Any], n: int) -> pa.RecordBatch:
    """A record batch of ``schema`` from ``columns`` (arrays, lists or ``None`` for an all-null column)."""
    arrays = []
    for f in schema:
        v = columns[f.name]
        if v is None:
            arrays.append(pa.nulls(n, type=f.type))
        elif isinstance(v, pa.Array):
            arrays.append(v)
        else:
            arrays.append(pa.array(v, type=f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
