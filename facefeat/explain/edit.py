"""Edits along a latent direction: latents, rendered frames, risk per frame, grids and GIFs.

A subject's latent ``x`` (the ``stylegan2``/``e4e`` table's ``[num_ws, dim]`` code) is moved to
``x + s * v`` for each step ``s`` (``v`` a :class:`~facefeat.explain.direction.LatentDirection`,
in its units: with a health direction one step is +1 predicted log-hazard), rendered through the
generator, and scored by the *real* survival model: every frame's risk is
``estimator.predict`` on the subject's feature row with the latent columns replaced by the
edited latent; the clinical covariates and any other features stay at the subject's values.

Layer ranges
------------
W+ row ``i`` of a StyleGAN2 generator styles the synthesis layers at resolution
``2 ** (i // 2 + 2)`` px (rows 0-1: 4 px, 2-3: 8 px, ...; the odd row also feeds the next
block's first convolution). As in StyleGAN, InterFaceGAN and StyleSpace the groups are defined
by that resolution, so they mean the same on every generator:

``coarse``  4-8 px (rows 0-3): pose, face shape, hair style;
``middle``  16-32 px (rows 4-7): facial features, expression, eyes open/closed;
``fine``    64 px and above (rows 8+): colour scheme, skin texture, micro-structure;
``all``     every row.

A 1024 px generator (18 rows) has fine = rows 8-17, a 256 px one (14 rows) rows 8-13; the
32 px test generator (8 rows) has no fine rows (asking for them is an error). ``layers`` also
takes explicit indices (``[0, 1, 2]``, ``"0-3"``, ``"0,2,5"``) and unions (``"coarse,middle"``).

Outside the chosen rows the latent is left unchanged. A layer-restricted step changes the
log-hazard by ``s * (g_L . v_L)`` (only part of the full step's 1 per unit); the frames' risks
are always read from the model, never assumed. For a model fitted on W (``[1, dim]``), the
feature the model reads from an edited W+ code is its layer mean (the W that it came from when
every row moves alike).

Public API: :func:`parse_steps`, :func:`layer_indices`, :func:`edit_latents`,
:func:`model_features`, :func:`render_edits`, :func:`risk_labels`, :func:`edit_grid`,
:func:`save_gif`, :class:`EditContext`, :func:`load_edit_context`, :func:`load_edit_generator`,
:func:`edit_subject`, :class:`EditResult`.

Example
-------
>>> ctx = load_edit_context("models/m1", "runs/r1", clinical="clinical.csv")   # doctest: +SKIP
>>> G = load_edit_generator(ctx.generator_spec())                               # doctest: +SKIP
>>> res = edit_subject(ctx, "P017", steps=parse_steps("-3..3"), G=G)            # doctest: +SKIP
>>> res.grid().save("P017_grid.png"); res.table()                               # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facefeat.errors import ConfigError, DataError, InputError

__all__ = [
    "LAYER_GROUPS",
    "EditContext",
    "EditResult",
    "edit_grid",
    "edit_latents",
    "edit_subject",
    "layer_indices",
    "layer_resolution",
    "load_edit_context",
    "load_edit_generator",
    "model_features",
    "parse_steps",
    "render_edits",
    "risk_labels",
    "save_gif",
]

#: Layer groups by the synthesis resolution (px) their W+ rows style: (lowest, highest).
LAYER_GROUPS = {"coarse": (4, 8), "middle": (16, 32), "fine": (64, 1 << 20)}


def layer_resolution(index: int) -> int:
    """Synthesis resolution (px) styled by W+ row ``index``: ``2 ** (index // 2 + 2)``."""
    return 2 ** (int(index) // 2 + 2)


def layer_indices(layers, num_ws: int) -> np.ndarray:
    """W+ rows selected by ``layers`` (see the module notes), sorted.

    Parameters
    ----------
    layers : None, str or sequence of int
        ``None`` / ``"all"``; a group name or a comma-separated union of names (``"coarse"``,
        ``"coarse,middle"``); indices and ranges (``"0-3"``, ``"0,2,5"``); or a list of ints.
    num_ws : int
        Rows of the generator's W+.

    Raises
    ------
    ConfigError
        Unknown name, an index out of range, or a group with no rows on this generator.
    """
    num_ws = int(num_ws)
    if layers is None or (isinstance(layers, str) and layers.strip().lower() == "all"):
        return np.arange(num_ws)
    chosen: set[int] = set()
    parts: list = [p.strip() for p in layers.split(",")] if isinstance(layers, str) else list(layers)
    max_res = layer_resolution(num_ws - 1)
    for part in parts:
        if isinstance(part, str) and part.lower() in LAYER_GROUPS:
            lo, hi = LAYER_GROUPS[part.lower()]
            rows = [i for i in range(num_ws) if lo <= layer_resolution(i) <= hi]
            if not rows:
                raise ConfigError(f"layer group {part!r} ({lo}-{min(hi, 1024)} px) is empty for a generator with "
                                  f"{num_ws} W+ rows (up to {max_res} px); use coarse, middle or explicit rows "
                                  f"0-{num_ws - 1}")
            chosen.update(rows)
            continue
        text = str(part)
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
        if not m:
            raise ConfigError(f"layers: {text!r} is not a group ({', '.join(LAYER_GROUPS)}, all), a row index or a "
                              "range like 0-3")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a or b >= num_ws:
            raise ConfigError(f"layers: rows {text!r} are outside 0-{num_ws - 1} (the generator has {num_ws} W+ rows)")
        chosen.update(range(a, b + 1))
    if not chosen:
        raise ConfigError("layers: no row selected")
    return np.array(sorted(chosen), dtype=int)


def parse_steps(text) -> np.ndarray:
    """Edit steps from ``"-3..3"`` (integers, inclusive), ``"-2..2:0.5"`` (with a stride),
    ``"-2,0,2"`` or a sequence of numbers.

    Raises
    ------
    ConfigError
        Unparseable text, a non-positive stride, or no step.
    """
    if not isinstance(text, str):
        out = np.asarray(list(text), dtype=np.float64)
    else:
        t = text.strip()
        m = re.fullmatch(r"(-?[\d.]+)\.\.(-?[\d.]+)(?::([\d.]+))?", t)
        try:
            if m:
                lo, hi = float(m.group(1)), float(m.group(2))
                stride = float(m.group(3)) if m.group(3) else 1.0
                if stride <= 0 or hi < lo:
                    raise ValueError
                n = int(np.floor((hi - lo) / stride + 1e-9)) + 1
                out = lo + stride * np.arange(n)
            else:
                out = np.asarray([float(v) for v in t.split(",") if v.strip()], dtype=np.float64)
        except ValueError:
            raise ConfigError(f"steps {text!r}: use LO..HI (e.g. -3..3), LO..HI:STRIDE (-2..2:0.5) or a comma list "
                              "(-2,0,2)") from None
    if out.size == 0 or not np.all(np.isfinite(out)):
        raise ConfigError(f"steps {text!r}: need at least one finite step")
    return out


def _as_rows(latent) -> np.ndarray:
    x = np.asarray(latent, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ConfigError(f"a latent is [num_ws, dim] or [dim]; got shape {list(x.shape)}")
    return x


def edit_latents(latent, direction, steps, layers=None, *, num_ws: int | None = None) -> np.ndarray:
    """Latents moved along a direction: ``latent + s * v`` for each step ``s``.

    Parameters
    ----------
    latent : array of shape (num_ws, dim), (1, dim) or (dim,)
        The subject's code; a W code is repeated on every row.
    direction : LatentDirection or array of shape (num_ws, dim) / (1, dim) / (dim,)
        The unit step (a W direction is added to every row).
    steps : sequence of float
    layers : see :func:`layer_indices`
        Rows that move; the others keep the latent's values.
    num_ws : int, optional
        Rows of the output (the generator's ``num_ws``); default the larger of the latent's
        and the direction's rows.

    Returns
    -------
    ndarray of shape (len(steps), num_ws, dim), float64
    """
    x = _as_rows(latent)
    vec = _as_rows(direction.vector if hasattr(direction, "vector") else direction)
    if x.shape[1] != vec.shape[1]:
        raise ConfigError(f"latent dim {x.shape[1]} differs from the direction's {vec.shape[1]}")
    n = int(num_ws or max(len(x), len(vec)))
    for what, arr in (("latent", x), ("direction", vec)):
        if len(arr) not in (1, n):
            raise ConfigError(f"the {what} has {len(arr)} W+ rows; the generator has {n}")
    base = np.repeat(x, n, axis=0) if len(x) == 1 else x
    step = np.repeat(vec, n, axis=0) if len(vec) == 1 else vec.copy()
    keep = np.zeros(n, dtype=bool)
    keep[layer_indices(layers, n)] = True
    step[~keep] = 0.0
    s = np.asarray(list(steps) if not np.isscalar(steps) else [steps], dtype=np.float64)
    return base[None] + s[:, None, None] * step[None]


def model_features(latents: np.ndarray, rows: int) -> np.ndarray:
    """The latent the model reads from W+ codes ``(n, num_ws, dim)``: the codes themselves for a
    W+ model, their layer mean for a W model (``rows == 1``)."""
    z = np.asarray(latents, dtype=np.float64)
    if rows == 1:
        return z.mean(axis=1, keepdims=True)
    if z.shape[1] != rows:
        raise ConfigError(f"the model reads {rows} W+ rows; the edited latents have {z.shape[1]}")
    return z


def render_edits(G, latents, *, noise_mode: str = "const", batch_size: int = 8, device=None) -> np.ndarray:
    """Render W+ latents ``(n, num_ws, dim)`` through the generator: ``uint8 (n, R, R, 3)``.

    ``noise_mode="const"`` uses the generator's stored noise, so frames differ only by the edit.
    """
    import torch

    from facefeat.inversion.metrics import synth_to_uint8

    z = np.asarray(latents, dtype=np.float32)
    if z.ndim != 3 or z.shape[1] != G.num_ws or z.shape[2] != G.w_dim:
        raise ConfigError(f"latents of shape {list(z.shape[1:])} do not fit the generator's W+ [{G.num_ws}, {G.w_dim}]")
    if device is None:
        device = next(G.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(z), int(batch_size)):
            ws = torch.from_numpy(z[i:i + int(batch_size)]).to(device)
            out.append(synth_to_uint8(G.synthesis(ws, noise_mode=noise_mode)))
    return np.concatenate(out) if out else np.zeros((0, G.img_resolution, G.img_resolution, 3), np.uint8)


def risk_labels(steps, log_hazard, *, base_log_hazard: float | None = None, units: str = "log-HR") -> list[str]:
    """Text under each frame: the step, the predicted log-hazard and the hazard relative to the
    unedited subject (``base_log_hazard``; default the frame at step 0, else the first)."""
    steps = np.asarray(steps, dtype=float)
    lh = np.asarray(log_hazard, dtype=float)
    if base_log_hazard is None:
        zero = np.flatnonzero(steps == 0)
        base_log_hazard = float(lh[zero[0]] if len(zero) else lh[0])
    out = []
    for s, r in zip(steps, lh):
        out.append(f"step {s:+g}\nlog-hazard {r:+.2f}\nrel. hazard {np.exp(r - base_log_hazard):.2f}")
    return out


def _to_pil(frame):
    from PIL import Image

    if isinstance(frame, Image.Image):
        return frame.convert("RGB")
    arr = np.asarray(frame)
    if arr.dtype != np.uint8:
        raise ConfigError(f"frames must be uint8 RGB arrays (H, W, 3); got {arr.dtype}")
    return Image.fromarray(arr, "RGB")


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _tile(img, label: str | None, cell: int, font, line_h: int, n_lines: int, pad: int):
    from PIL import Image, ImageDraw

    if img.width != cell:
        img = img.resize((cell, round(img.height * cell / img.width)),
                         Image.NEAREST if img.width < cell else Image.LANCZOS)
    h = img.height + (pad + n_lines * line_h + pad if n_lines else 0)
    tile = Image.new("RGB", (cell, h), "white")
    tile.paste(img, (0, 0))
    if label:
        draw = ImageDraw.Draw(tile)
        for k, line in enumerate(label.splitlines()):
            w = draw.textlength(line, font=font)
            draw.text(((cell - w) / 2, img.height + pad + k * line_h), line, fill="black", font=font)
    return tile


def edit_grid(frames, labels: Sequence[str] | None = None, *, min_size: int = 128, title: str | None = None,
              pad: int = 4, columns: int | None = None):
    """Frames side by side with a label under each: a ``PIL.Image``.

    Parameters
    ----------
    frames : uint8 array (n, H, W, 3) or list of arrays / PIL images
    labels : list of str, optional
        One (multi-line) text per frame, e.g. from :func:`risk_labels`.
    min_size : int, default 128
        Frames narrower than this are enlarged (nearest neighbour) so labels fit.
    title : str, optional
        A line above the grid.
    columns : int, optional
        Frames per row (default: all in one row).
    """
    from PIL import Image, ImageDraw

    imgs = [_to_pil(f) for f in frames]
    if not imgs:
        raise ConfigError("edit_grid needs at least one frame")
    if labels is not None and len(labels) != len(imgs):
        raise ConfigError(f"{len(labels)} labels for {len(imgs)} frames")
    cell = max(int(min_size), max(i.width for i in imgs))
    font_size = max(10, cell // 14)
    font = _font(font_size)
    line_h = int(font_size * 1.25)
    n_lines = max((len(lbl.splitlines()) for lbl in labels), default=0) if labels else 0
    tiles = [_tile(img, labels[i] if labels else None, cell, font, line_h, n_lines, pad) for i, img in enumerate(imgs)]
    cols = int(columns or len(tiles))
    rows = (len(tiles) + cols - 1) // cols
    th = max(t.height for t in tiles)
    top = (line_h + 2 * pad) if title else 0
    grid = Image.new("RGB", (cols * cell + (cols + 1) * pad, top + rows * th + (rows + 1) * pad), "white")
    if title:
        ImageDraw.Draw(grid).text((pad, pad), title, fill="black", font=font)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        grid.paste(t, (pad + c * (cell + pad), top + pad + r * (th + pad)))
    return grid


def save_gif(frames, path: str | os.PathLike, labels: Sequence[str] | None = None, *, duration_ms: int = 400,
             min_size: int = 128, loop: int = 0) -> Path:
    """An animated GIF with one frame per edit step (each with its label), written atomically."""
    imgs = [edit_grid([f], [labels[i]] if labels else None, min_size=min_size) for i, f in enumerate(frames)]
    if not imgs:
        raise ConfigError("save_gif needs at least one frame")
    from facefeat.io.atomic import atomic_output

    path = Path(path)
    with atomic_output(path, suffix=".gif") as tmp:
        imgs[0].save(tmp, format="GIF", save_all=True, append_images=imgs[1:], duration=int(duration_ms), loop=loop,
                     optimize=False, disposal=1)
    return path


# -- subjects: the real model's risk for every frame ---------------------------------------------


@dataclass
class EditContext:
    """What a subject's edit needs: the model, its input table and the latents.

    Build with :func:`load_edit_context`.

    Attributes
    ----------
    estimator : SurvivalEstimator
    metadata : dict
        ``model.json``.
    X : pandas.DataFrame
        One row per subject (index ``subject_id``) with the model's input columns, as
        ``facefeat predict`` builds it (photos aggregated per subject, clinical covariates).
    latents : LatentRows
        The latent column, one row per image (all statuses).
    column : str
        Latent column, e.g. ``"stylegan2__latent"``.
    shape : (rows, dim)
        The latent shape the model reads.
    flat : list of str
        The model's flattened latent columns ``<column>_<i>``.
    sources : dict
        Model dir, feature files, clinical table.
    """

    estimator: Any
    metadata: dict
    X: Any
    latents: Any
    column: str
    shape: tuple[int, int]
    flat: list[str]
    sources: dict[str, Any] = field(default_factory=dict)

    def direction(self, **kw):
        """:func:`~facefeat.explain.direction.health_direction` of this model."""
        from facefeat.explain.direction import health_direction

        d = health_direction((self.estimator, self.metadata), column=self.column, **kw)
        d.provenance.setdefault("model_dir", self.sources.get("model"))
        return d

    def generator_spec(self, override: str | os.PathLike | None = None) -> dict[str, Any]:
        """The generator to render with: ``override``, else the checkpoint recorded in the
        latent table's provenance (extractor config).

        Raises
        ------
        ConfigError
            Neither given nor recorded.
        """
        if override:
            return {"checkpoint": str(override), "network": "G_ema"}
        from facefeat.explain.direction import generator_from_provenance
        from facefeat.io.tables import read_provenance

        src = self.latents.source
        spec = generator_from_provenance(read_provenance(src), source=src) if src else None
        if spec is None:
            raise ConfigError(f"the latent table {src or '(in memory)'} does not record a generator checkpoint in its "
                              "provenance; pass one with --generator (generator=...)")
        return spec

    def subject(self, subject: str, image_id: str | None = None) -> tuple[Any, np.ndarray, str]:
        """``(feature row, latent (rows, dim) of the rendered image, image_id)`` of a subject.

        The rendered image is ``image_id`` or the subject's first image with status ok; its
        latent replaces the subject's (possibly photo-averaged) latent in the feature row, so
        the risk of frame 0 is the risk of the rendered photo.

        Raises
        ------
        DataError
            The subject is not in the latent table, has no image with status ok, or is not in
            the modelling table (e.g. missing from the clinical table); the message names the
            subject and the table.
        """
        subject = str(subject)
        rows = self.latents
        table = rows.source or "the latent table"
        mine = np.flatnonzero(rows.subject_id == subject)
        if not len(mine):
            example = ", ".join(list(dict.fromkeys(rows.subject_id.tolist()))[:5])
            raise DataError(f"subject {subject!r} is not in feature table {table} (its subjects include {example})")
        usable = [i for i in mine if rows.ok[i]]
        if image_id is not None:
            usable = [i for i in mine if rows.image_id[i] == str(image_id)]
            if not usable:
                raise DataError(f"image {image_id!r} of subject {subject!r} is not in feature table {table}")
            if not rows.ok[usable[0]]:
                raise DataError(f"image {image_id!r} of subject {subject!r} has no latent in {table} "
                                f"(status {rows.status[usable[0]]})")
        if not usable:
            st = ", ".join(f"{rows.image_id[i][:12]}: {rows.status[i]}" for i in mine)
            raise DataError(f"subject {subject!r} has no latent in feature table {table}: no image with status ok "
                            f"({st}); re-extract the photo or choose another subject")
        if subject not in self.X.index:
            clin = self.sources.get("clinical")
            raise DataError(f"subject {subject!r} has a latent in {table} but no row in the modelling table"
                            + (f" (is it in the clinical table {clin}, with every covariate?)" if clin else ""))
        i = usable[0]
        return self.X.loc[[subject]].copy(), rows.values[i], str(rows.image_id[i])

    def predict(self, row, feature_latents: np.ndarray) -> np.ndarray:
        """The model's risk (log-hazard) for ``row`` with its latent replaced by each of
        ``feature_latents (n, rows, dim)``."""
        import pandas as pd

        z = np.asarray(feature_latents, dtype=np.float64).reshape(len(feature_latents), -1)
        frame = pd.concat([row] * len(z), ignore_index=True)
        frame.loc[:, self.flat] = z
        return np.asarray(self.estimator.predict(frame), dtype=np.float64)


def _model_files(features, meta: dict) -> Any:
    """Restrict a run folder to the tables the model was fitted on (others would not match)."""
    if isinstance(features, (str, os.PathLike)) and Path(features).is_dir():
        names = [t.get("file") for t in (meta.get("schema", {}).get("feature_tables") or []) if t.get("file")]
        files = [Path(features) / n for n in names if (Path(features) / n).is_file()]
        if names and len(files) == len(names):
            return files
        if names:
            missing = [n for n in names if not (Path(features) / n).is_file()]
            raise InputError(f"run folder {features} lacks the feature table(s) {missing} the model was fitted on")
    return features


def load_edit_context(model, features, *, clinical=None, column: str | None = None, sep: str | None = None,
                      decimal: str | None = None, X=None, trust: bool = False) -> EditContext:
    """Load a saved model, build its input table for the subjects, and read their latents.

    Parameters
    ----------
    model : path or (estimator, metadata)
        Directory written by ``facefeat fit``.
    features : path
        The run folder (or latent Parquet table) the model's features come from.
    clinical : path or DataFrame, optional
        Needed when the model uses clinical covariates (they are held at each subject's values).
    column : str, optional
        The latent column when the model has several.
    X : pandas.DataFrame, optional
        The model's input table when the caller has already built it with
        :func:`~facefeat.survival.dataset.load_model_dataset` from the same model, features and
        clinical table (the report does); the data are then not read a second time.

    Raises
    ------
    ConfigError
        The model uses covariates and no clinical table is given; the model is not on latents.
    """
    from facefeat.explain.direction import latent_block_columns
    from facefeat.explain.probes import read_latents
    from facefeat.io.tables import feature_tables, read_schema
    from facefeat.survival.dataset import load_model_dataset
    from facefeat.survival.persist import load_model

    if isinstance(model, tuple):
        est, meta = model
        model_dir = None
    else:
        est, meta = load_model(model, trust=trust)
        model_dir = str(model)
    settings = dict(meta.get("settings") or {})
    covs = list(settings.get("covariates_used") or [])
    if covs and clinical is None:
        raise ConfigError(f"the model uses the clinical covariate(s) {covs}; pass the clinical table (--clinical CSV) "
                          "so they can be held at each subject's values during the edit")
    col, shape, flat = latent_block_columns(meta, getattr(est, "feature_names_in_", []), column=column)
    files = _model_files(features, meta)
    if X is None:
        X = load_model_dataset(meta, clinical=clinical, features=files, require_target=False, sep=sep,
                               decimal=decimal).X
    latent_files = files if isinstance(files, list) else [files]
    src = None
    for p in feature_tables(latent_files):
        if col in read_schema(p).names:
            src = p
    if src is None:
        raise InputError(f"no feature table in {features} holds the latent column {col!r}")
    rows = read_latents(src, col)
    if tuple(rows.shape) != tuple(shape) and not (shape[0] == 1 and rows.shape[1] == shape[1]):
        raise DataError(f"{src}: column {col!r} has shape {list(rows.shape)}, the model was fitted on {list(shape)}")
    return EditContext(estimator=est, metadata=meta, X=X, latents=rows, column=col, shape=shape, flat=flat,
                       sources={"model": model_dir, "features": [str(f) for f in latent_files],
                                "latent_table": str(src), "clinical": None if clinical is None else str(clinical)})


def load_edit_generator(spec, *, device: str = "cpu"):
    """Load the generator named by :meth:`EditContext.generator_spec` (or a path / registry name)."""
    from facefeat.models.checkpoints import load_generator
    from facefeat.models.registry import resolve_model

    if isinstance(spec, dict):
        path, network = spec["checkpoint"], spec.get("network") or "G_ema"
    else:
        path, network = str(spec), "G_ema"
    return load_generator(resolve_model(path), which=network, device=device)


@dataclass
class EditResult:
    """A subject's edit: steps, latents, the model's risk per frame and the rendered frames.

    Attributes
    ----------
    subject_id, image_id : str
    steps : ndarray (n,)
    layers : ndarray of int
        W+ rows that moved.
    latents : ndarray (n, num_ws, dim)
        The rendered W+ codes.
    features : ndarray (n, rows, dim)
        The latent the model read for each frame.
    log_hazard : ndarray (n,)
        ``estimator.predict`` of each frame (clinical covariates at the subject's values).
    base_log_hazard : float
        The unedited subject's (the rendered image's latent).
    images : uint8 ndarray (n, R, R, 3) or None
    direction : LatentDirection
    """

    subject_id: str
    image_id: str
    steps: np.ndarray
    layers: np.ndarray
    latents: np.ndarray
    features: np.ndarray
    log_hazard: np.ndarray
    base_log_hazard: float
    images: np.ndarray | None
    direction: Any

    @property
    def relative_hazard(self) -> np.ndarray:
        """``exp(log_hazard - base_log_hazard)``: hazard relative to the unedited subject."""
        return np.exp(self.log_hazard - self.base_log_hazard)

    def table(self):
        """One row per frame: step, log_hazard, delta_log_hazard, relative_hazard."""
        import pandas as pd

        return pd.DataFrame({"subject_id": self.subject_id, "image_id": self.image_id, "step": self.steps,
                             "log_hazard": self.log_hazard,
                             "delta_log_hazard": self.log_hazard - self.base_log_hazard,
                             "relative_hazard": self.relative_hazard})

    def labels(self) -> list[str]:
        return risk_labels(self.steps, self.log_hazard, base_log_hazard=self.base_log_hazard)

    def grid(self, **kw):
        """:func:`edit_grid` of the frames with :func:`risk_labels`."""
        if self.images is None:
            raise ConfigError("the edit was not rendered (render=False)")
        kw.setdefault("title", f"{self.subject_id}: {self.direction.name} direction"
                               + ("" if len(self.layers) == self.latents.shape[1] else
                                  f", rows {_ranges(self.layers)}"))
        return edit_grid(self.images, self.labels(), **kw)

    def save(self, out_dir: str | os.PathLike, *, gif: bool = False, frames: bool = False,
             prefix: str | None = None) -> dict[str, Path]:
        """Write ``<prefix>_grid.png``, ``<prefix>_risk.csv`` and optionally ``<prefix>.gif`` and
        one PNG per frame; returns the paths by kind."""
        from PIL import Image

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = prefix or _safe(self.subject_id)
        paths = {"grid": out / f"{stem}_grid.png", "risk": out / f"{stem}_risk.csv"}
        self.grid().save(paths["grid"])
        self.table().to_csv(paths["risk"], index=False)
        if gif:
            paths["gif"] = save_gif(self.images, out / f"{stem}.gif", self.labels())
        if frames:
            for s, img in zip(self.steps, self.images):
                p = out / f"{stem}_step{s:+g}.png"
                Image.fromarray(img, "RGB").save(p)
                paths[f"frame{s:+g}"] = p
        return paths


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)) or "subject"


def _ranges(idx) -> str:
    idx = list(map(int, idx))
    out, start = [], idx[0]
    for a, b in zip(idx, idx[1:] + [None]):
        if b != a + 1:
            out.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    return ",".join(out)


def edit_subject(ctx: EditContext, subject: str, direction=None, steps=(-3, -2, -1, 0, 1, 2, 3), *, layers=None,
                 G=None, image_id: str | None = None, render: bool = True, noise_mode: str = "const") -> EditResult:
    """Edit one subject along a direction and score every frame with the model.

    Parameters
    ----------
    ctx : EditContext
    subject : str
    direction : LatentDirection, optional
        Default: the model's health direction (:meth:`EditContext.direction`).
    steps : sequence of float
        In the direction's units (health: +1 log-hazard per unit).
    layers : see :func:`layer_indices`
    G : Generator, optional
        Needed when ``render`` (default: load the one of :meth:`EditContext.generator_spec`).
    image_id : str, optional
        Which photo of the subject to edit (default: the first with status ok).

    Returns
    -------
    EditResult
    """
    direction = direction if direction is not None else ctx.direction()
    row, lat, img_id = ctx.subject(subject, image_id)
    if render and G is None:
        G = load_edit_generator(ctx.generator_spec())
    num_ws = G.num_ws if G is not None else max(lat.shape[0], direction.num_ws)
    if direction.dim != lat.shape[1]:
        raise ConfigError(f"direction {direction.name!r} has dim {direction.dim}; the latents have {lat.shape[1]}")
    steps = np.asarray(list(steps), dtype=np.float64)
    latents = edit_latents(lat, direction, steps, layers, num_ws=num_ws)
    feats = model_features(latents, ctx.shape[0])
    risk = ctx.predict(row, feats)
    base = float(ctx.predict(row, lat[None])[0])
    images = render_edits(G, latents, noise_mode=noise_mode) if render else None
    return EditResult(subject_id=str(subject), image_id=img_id, steps=steps, layers=layer_indices(layers, num_ws),
                      latents=latents, features=feats, log_hazard=risk, base_log_hazard=base, images=images,
                      direction=direction)
