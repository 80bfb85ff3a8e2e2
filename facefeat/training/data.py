"""Training images: FFHQ-aligned face crops at the generator's resolution.

Three sources (:func:`load_training_images`):

* a **run folder** of ``facefeat extract`` (it holds ``run.json`` or ``.cache/aligned``): the
  aligned crops in its content-addressed cache (``RUN/.cache/aligned/<xx>/<key>.png``). The
  cache holds every size the run aligned; the crops of the training resolution are used, or
  the smallest larger size downscaled (LANCZOS). Run the extraction with
  ``-s align.sizes=[256]`` (the training resolution) to have them.
* a **plain folder** of already aligned square crops (any image format, searched
  recursively); other sizes are resized to the resolution (LANCZOS).
* a folder of **photos** with ``align=True``: each photo is decoded (EXIF orientation), its
  largest face detected (dlib HOG) and landmarked (68 points) and FFHQ-aligned at the
  resolution, through :mod:`facefeat.face`, with crops cached in ``cache_dir``. Photos without
  a face are skipped, counted and listed in :attr:`TrainingImages.skipped`.

Images are held as uint8 in memory when they fit in ``max_memory_bytes`` and read from disk per
minibatch otherwise. The order is the sorted file order, so the same folder always gives the
same dataset (and :meth:`TrainingImages.fingerprint` the same hash).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from facefeat.errors import InputError
from facefeat.io.hashing import sha256_bytes, sha256_file

log = logging.getLogger(__name__)

#: Above this many bytes (uint8 pixels) images are read from disk per minibatch.
DEFAULT_MAX_MEMORY = 1 << 30

_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def _load_rgb(path: Path) -> np.ndarray:
    import PIL.Image

    try:
        with PIL.Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the image ({exc}); remove it or re-create it") from exc


def _resize(img: np.ndarray, resolution: int) -> np.ndarray:
    if img.shape[0] == resolution and img.shape[1] == resolution:
        return img
    import PIL.Image

    return np.asarray(PIL.Image.fromarray(img).resize((resolution, resolution), PIL.Image.LANCZOS))


@dataclass
class TrainingImages:
    """An ordered set of aligned RGB crops at one resolution.

    Parameters
    ----------
    resolution : int
    files : list of Path, optional
        Image files (loaded and resized on demand or up front).
    arrays : ndarray, optional
        ``uint8 (N, R, R, 3)`` crops already in memory (instead of ``files``).
    source : dict
        How the images were found (kind, path, counts), for provenance.
    skipped : list of (str, str)
        ``(file, reason)`` of inputs that were not used.
    max_memory_bytes : int
        Hold the pixels in memory when they need at most this much.
    """

    resolution: int
    files: list[Path] = field(default_factory=list)
    arrays: np.ndarray | None = None
    source: dict[str, Any] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    max_memory_bytes: int = DEFAULT_MAX_MEMORY

    def __post_init__(self) -> None:
        self.files = [Path(f) for f in self.files]
        if self.arrays is not None:
            a = np.asarray(self.arrays)
            if a.dtype != np.uint8 or a.ndim != 4 or a.shape[3] != 3:
                raise InputError(f"training images must be uint8 (N, R, R, 3), got {a.dtype} {a.shape}")
            if a.shape[1:3] != (self.resolution, self.resolution):
                a = np.stack([_resize(x, self.resolution) for x in a])
            self.arrays = np.ascontiguousarray(a)
        elif len(self.files) * 3 * self.resolution ** 2 <= self.max_memory_bytes and self.files:
            self.arrays = np.stack([_resize(_load_rgb(f), self.resolution) for f in self.files])
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        if self.files:
            return len(self.files)
        return 0 if self.arrays is None else len(self.arrays)

    def image(self, index: int) -> np.ndarray:
        """``uint8 (R, R, 3)`` crop ``index``."""
        if self.arrays is not None:
            return self.arrays[index]
        return _resize(_load_rgb(self.files[index]), self.resolution)

    def load(self, indices: Sequence[int], *, flip: Sequence[bool] | None = None) -> torch.Tensor:
        """``uint8 [B, 3, R, R]`` for ``indices`` (x-flipped where ``flip`` is True)."""
        out = np.stack([self.image(int(i)) for i in indices])
        if flip is not None:
            for j, f in enumerate(flip):
                if f:
                    out[j] = out[j, :, ::-1]
        return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2)))

    def fingerprint(self) -> str:
        """sha256 over the images' contents in order (file bytes, or pixels for arrays)."""
        if self._fingerprint is None:
            if self.files:
                parts = [sha256_file(f) for f in self.files]
            else:
                parts = [sha256_bytes(np.ascontiguousarray(a).tobytes()) for a in self.arrays]
            self._fingerprint = sha256_bytes(json.dumps([self.resolution, parts]).encode())
        return self._fingerprint

    def subset(self, indices: Sequence[int]) -> TrainingImages:
        idx = [int(i) for i in indices]
        files = [self.files[i] for i in idx] if self.files else []
        arrays = self.arrays[idx] if self.arrays is not None else None
        sub = TrainingImages.__new__(TrainingImages)
        sub.resolution, sub.files, sub.arrays = self.resolution, files, arrays
        sub.source, sub.skipped, sub.max_memory_bytes = dict(self.source), [], self.max_memory_bytes
        sub._fingerprint = None
        return sub

    def split(self, holdout: int, *, seed: int = 0) -> tuple[TrainingImages, TrainingImages | None]:
        """``(train, held_out)``: ``holdout`` images chosen with ``seed`` are kept out of training.

        At least 2 images stay for training; ``holdout=0`` returns ``(self, None)``.
        """
        n = len(self)
        k = min(int(holdout), max(n - 2, 0))
        if k <= 0:
            return self, None
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).tolist()
        held = sorted(perm[:k])
        keep = sorted(perm[k:])
        train, test = self.subset(keep), self.subset(held)
        train.source = {**self.source, "held_out": k}
        test.source = {**self.source, "role": "held_out"}
        return train, test

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for provenance."""
        return {**self.source, "n_images": len(self), "resolution": self.resolution,
                "fingerprint_sha256": self.fingerprint(), "n_skipped": len(self.skipped),
                "skipped": [{"file": f, "reason": r} for f, r in self.skipped[:50]]}


class InfiniteSampler:
    """Endless shuffled epochs over ``n`` images (``2n`` with ``mirror``: index ``i >= n`` is
    image ``i - n`` x-flipped). The permutation of epoch ``e`` is drawn from
    ``seed`` and ``e`` alone, so the state is just ``(epoch, pos)``."""

    def __init__(self, n: int, *, seed: int = 0, mirror: bool = False) -> None:
        if n < 1:
            raise InputError("no training images")
        self.n, self.seed, self.mirror = int(n), int(seed), bool(mirror)
        self.epoch, self.pos = 0, 0
        self._perm: list[int] | None = None

    @property
    def size(self) -> int:
        return self.n * (2 if self.mirror else 1)

    def _permutation(self) -> list[int]:
        if self._perm is None:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._perm = torch.randperm(self.size, generator=gen).tolist()
        return self._perm

    def next(self, batch: int) -> tuple[list[int], list[bool]]:
        """``(indices, flips)`` of the next minibatch."""
        idx: list[int] = []
        while len(idx) < batch:
            idx.append(self._permutation()[self.pos])
            self.pos += 1
            if self.pos == self.size:
                self.epoch, self.pos, self._perm = self.epoch + 1, 0, None
        return [i % self.n for i in idx], [i >= self.n for i in idx]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos, "n": self.n, "mirror": int(self.mirror), "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if int(state["n"]) != self.n or bool(state["mirror"]) != self.mirror:
            raise InputError(f"resume: the sampler was saved for {state['n']} images (mirror={bool(state['mirror'])}) "
                             f"but the dataset now has {self.n} (mirror={self.mirror})")
        self.epoch, self.pos, self._perm = int(state["epoch"]), int(state["pos"]), None


# -- finding images ----------------------------------------------------------------------------

def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in _SUFFIXES
                  and not p.name.startswith("."))


def _size(path: Path) -> tuple[int, int] | None:
    import PIL.Image

    try:
        with PIL.Image.open(path) as im:
            return im.size
    except OSError:
        return None


def is_run_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / "run.json").is_file() or (p / ".cache" / "aligned").is_dir()


def _from_files(files: list[Path], resolution: int, kind: str, root: Path, *, pick_size: bool,
                max_memory_bytes: int) -> TrainingImages:
    sizes: dict[Path, tuple[int, int] | None] = {f: _size(f) for f in files}
    skipped = [(str(f), "unreadable image") for f, s in sizes.items() if s is None]
    non_square = [f for f, s in sizes.items() if s is not None and s[0] != s[1]]
    if non_square:
        raise InputError(
            f"{root}: {len(non_square)} image(s) are not square (e.g. {non_square[0]}), so they are not aligned face "
            f"crops; align them first ('facefeat extract {root} --out RUN -s align.sizes=[{resolution}]' and pass "
            f"--images RUN) or pass --align to align the photos on the fly")
    usable = {f: s[0] for f, s in sizes.items() if s is not None}
    if pick_size and usable:
        # A run's cache holds every aligned size; take the training size, else the smallest larger.
        available = sorted(set(usable.values()))
        larger = [s for s in available if s >= resolution]
        chosen = larger[0] if larger else available[-1]
        for f, s in usable.items():
            if s != chosen:
                skipped.append((str(f), f"aligned at {s} px; using the {chosen} px crops of this run"))
        usable = {f: s for f, s in usable.items() if s == chosen}
    small = sorted({s for s in usable.values() if s < resolution})
    if small:
        log.warning("%s: %d image(s) are smaller than %d px (sizes %s) and are upscaled; align at >= %d px for "
                    "sharper training images", root, sum(s < resolution for s in usable.values()), resolution,
                    small, resolution)
    kept = sorted(usable)
    if not kept:
        raise InputError(f"{root}: no usable aligned images ({len(files)} files, {len(skipped)} skipped)")
    source = {"kind": kind, "path": str(root), "n_found": len(files),
              "sizes": sorted({int(s) for s in usable.values()})}
    return TrainingImages(resolution=resolution, files=kept, source=source, skipped=skipped,
                          max_memory_bytes=max_memory_bytes)


def align_photos(files: Sequence[Path], resolution: int, *, cache_dir: str | os.PathLike | None = None,
                 detector: str = "hog", upsample: int = 1) -> tuple[list[np.ndarray], list[str], list[tuple[str, str]]]:
    """FFHQ-align the largest face of each photo at ``resolution`` (transform size 4x).

    Returns ``(crops, sources, skipped)``: crops ``uint8 (R, R, 3)``, the photo each came
    from, and ``(photo, reason)`` for photos without a usable face. Crops are cached in
    ``cache_dir`` (:class:`facefeat.face.cache.AlignedCache`), keyed by the photo's sha256,
    the sizes and the detector settings.
    """
    from facefeat.face.align import align_face
    from facefeat.face.cache import AlignedCache, cache_key
    from facefeat.face.detect import FaceDetector
    from facefeat.face.landmarks import LandmarkPredictor
    from facefeat.io.images import ImageDecodeError, read_and_decode

    cache = AlignedCache(cache_dir) if cache_dir is not None else None
    det = pred = None
    crops, sources, skipped = [], [], []
    settings = {"detector": detector, "upsample": int(upsample), "multiple_faces": "largest",
                "purpose": "facefeat.training"}
    for path in files:
        key = cache_key(sha256_file(path), resolution, 4 * resolution, settings=settings) if cache else None
        hit = cache.get(key) if cache else None
        if hit is not None:
            crops.append(hit)
            sources.append(str(path))
            continue
        try:
            rgb = read_and_decode(path).rgb
        except ImageDecodeError as exc:
            skipped.append((str(path), f"{exc.status}: {exc}"))
            continue
        if det is None:
            det, pred = FaceDetector(kind=detector, upsample=upsample), LandmarkPredictor()
        faces = det.detect(rgb)
        if not faces:
            skipped.append((str(path), "no_face"))
            continue
        face = max(faces, key=lambda d: (d.area, -d.box[0], -d.box[1]))
        try:
            points = pred.predict(rgb, face.box)
            crop = align_face(rgb, points, output_size=resolution, transform_size=4 * resolution).image
        except ValueError as exc:
            skipped.append((str(path), f"alignment failed: {exc}"))
            continue
        if cache is not None:
            cache.put(key, crop)
        crops.append(crop)
        sources.append(str(path))
    return crops, sources, skipped


def load_training_images(path: str | os.PathLike, resolution: int, *, align: bool = False,
                         cache_dir: str | os.PathLike | None = None,
                         max_memory_bytes: int = DEFAULT_MAX_MEMORY) -> TrainingImages:
    """Find the training crops under ``path`` (see the module notes).

    Parameters
    ----------
    path : path-like
        A ``facefeat extract`` run folder, a folder of aligned crops, or (``align=True``) a
        folder of photos.
    resolution : int
        The generator's resolution.
    align : bool
        Detect and align faces in the photos under ``path``.
    cache_dir : path-like, optional
        Where ``align=True`` caches its crops (``facefeat train generator`` uses
        ``OUT/.cache/aligned``); None disables caching.
    max_memory_bytes : int
        See :class:`TrainingImages`.

    Raises
    ------
    InputError
        Missing folder, no images, non-square images without ``align``, no face found anywhere.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise InputError(f"{root}: --images folder does not exist; give a facefeat extract run folder, a folder of "
                         f"aligned crops, or photos with --align")
    if root.is_file():
        raise InputError(f"{root}: --images must be a folder, not a file")
    if align:
        files = _image_files(root)
        if not files:
            raise InputError(f"{root}: no photos found (looked for {', '.join(_SUFFIXES)})")
        crops, sources, skipped = align_photos(files, resolution, cache_dir=cache_dir)
        for f, why in skipped:
            log.warning("%s: skipped (%s)", f, why)
        if not crops:
            raise InputError(f"{root}: no face could be aligned in any of {len(files)} photos")
        src = {"kind": "photos-aligned-on-the-fly", "path": str(root), "n_found": len(files),
               "aligned_from": sources, "alignment": f"FFHQ, dlib HOG largest face, transform {4 * resolution}"}
        return TrainingImages(resolution=resolution, arrays=np.stack(crops), source=src, skipped=skipped,
                              max_memory_bytes=max_memory_bytes)
    if is_run_dir(root):
        cache = root / ".cache" / "aligned"
        files = _image_files(cache) if cache.is_dir() else []
        if not files:
            raise InputError(
                f"{root}: a facefeat run folder without aligned crops in {cache}; re-run the extraction with the "
                f"cache on and this size: 'facefeat extract PHOTOS --out {root} -s align.sizes=[{resolution}]' "
                f"(or pass the cache folder itself if the run used another cache_dir)")
        return _from_files(files, resolution, "run-cache", cache, pick_size=True, max_memory_bytes=max_memory_bytes)
    files = _image_files(root)
    if not files:
        raise InputError(f"{root}: no images found (looked for {', '.join(_SUFFIXES)})")
    return _from_files(files, resolution, "folder", root, pick_size=False, max_memory_bytes=max_memory_bytes)
