"""Named public checkpoints (URL, sha256, licence, config) and the local model cache.

The registry is plain data: building it downloads, opens and hashes nothing. Files live under
``<FACEFEAT_HOME>/models/<name>/<filename>``; ``FACEFEAT_HOME`` defaults to
``platformdirs.user_cache_dir("facefeat")``. A machine without internet gets the same layout by
copying the files there by hand (see ``docs/models.md``).

sha256 policy: :attr:`ModelEntry.sha256` holds a hash **published by the file's publisher**, and
nothing else. None of the upstream projects below publishes one, so every entry is ``None`` and
is listed as *unverified*. Hashes that third-party mirrors report for what they say is the same
file are kept apart, in :attr:`ModelEntry.mirror_hashes`, with their source: ``verify`` says when a
local file has the same bytes as such a mirror, but a download never fails on them.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from facefeat.errors import ModelError

#: Checkpoint formats. ``facefeat`` = safetensors + JSON config (``facefeat models convert``).
FORMATS = ("nvidia-pkl", "rosinality-pt", "e4e-pt", "facefeat")

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Licence:
    """Terms that come with a checkpoint.

    Attributes
    ----------
    short : str
        Short name for listings.
    text : str
        What a user must know, printed by ``facefeat models pull``.
    urls : tuple of str
        Where the full terms are.
    non_commercial : bool
        True when commercial use is not allowed.
    """

    short: str
    text: str
    urls: tuple[str, ...]
    non_commercial: bool


@dataclass(frozen=True)
class MirrorHash:
    """sha256 that a third party reports for its copy of a file (not the publisher's hash)."""

    sha256: str
    size: int | None
    source: str


@dataclass(frozen=True)
class ModelEntry:
    """One downloadable checkpoint.

    Attributes
    ----------
    name : str
        Registry name (``facefeat models pull NAME``); also the cache sub-folder.
    filename : str
        File name in the cache (the upstream name, so hand-copied files keep their name).
    urls : tuple of str
        Download URLs, tried in order.
    format : str
        One of :data:`FORMATS`.
    licence : Licence
        Terms printed on pull.
    config : Mapping
        Architecture facts (``resolution``, ``num_ws``, channel settings, ...).
    sha256 : str or None
        Hash published by the publisher; ``None`` = unverified.
    size : int or None
        Exact size in bytes when the publisher states it.
    description : str
        One line on what the file is.
    source : str
        Where the URL was published (page or file).
    browser_url : str or None
        Page to open in a browser when the direct URL does not work (Google Drive).
    mirror_hashes : tuple of MirrorHash
        Third-party hashes, informational only.
    """

    name: str
    filename: str
    urls: tuple[str, ...]
    format: str
    licence: Licence
    config: Mapping[str, object]
    sha256: str | None = None
    size: int | None = None
    description: str = ""
    source: str = ""
    browser_url: str | None = None
    mirror_hashes: tuple[MirrorHash, ...] = field(default=())

    @property
    def resolution(self) -> int | None:
        """Output (or encoder target) resolution in pixels, from :attr:`config`."""
        value = self.config.get("resolution")
        return int(value) if value is not None else None

    @property
    def verified(self) -> bool:
        """True when a publisher's sha256 is known."""
        return self.sha256 is not None


# --------------------------------------------------------------------------------------------
# Licences
# --------------------------------------------------------------------------------------------

_FFHQ_NOTE = (
    "Trained on FFHQ (Flickr-Faces-HQ), which NVIDIA distributes under CC BY-NC-SA 4.0 "
    "(https://github.com/NVlabs/ffhq-dataset): non-commercial, share-alike."
)

NVIDIA_ADA = Licence(
    short="NVIDIA-SCL-NC",
    text=(
        "NVIDIA Source Code License for StyleGAN2 with Adaptive Discriminator Augmentation (ADA), "
        "which covers the code and the pretrained weights: non-commercial use only, i.e. research "
        "or evaluation purposes (section 3.3, 'Use Limitation'). "
        + _FFHQ_NOTE
    ),
    urls=(
        "https://github.com/NVlabs/stylegan2-ada-pytorch#license",
        "https://github.com/NVlabs/ffhq-dataset",
    ),
    non_commercial=True,
)

ROSINALITY_CONVERTED = Licence(
    short="MIT code / NVIDIA-NC weights",
    text=(
        "rosinality/stylegan2-pytorch code is MIT-licensed, but this file holds NVIDIA's "
        "official StyleGAN2 FFHQ config-f weights converted to that layout, so the weights keep "
        "NVIDIA's terms (Nvidia Source Code License-NC: non-commercial, research or evaluation "
        "only). " + _FFHQ_NOTE
    ),
    urls=(
        "https://github.com/rosinality/stylegan2-pytorch",
        "https://nvlabs.github.io/stylegan2/license.html",
        "https://github.com/NVlabs/ffhq-dataset",
    ),
    non_commercial=True,
)

E4E_FFHQ = Licence(
    short="MIT code / NVIDIA-NC weights",
    text=(
        "encoder4editing code is MIT-licensed. The checkpoint also contains the FFHQ StyleGAN2 "
        "decoder (NVIDIA's weights in rosinality's layout) and was trained on FFHQ, so treat it "
        "as non-commercial: NVIDIA's terms (research or evaluation only) apply to the decoder. "
        + _FFHQ_NOTE
    ),
    urls=(
        "https://github.com/omertov/encoder4editing",
        "https://nvlabs.github.io/stylegan2/license.html",
        "https://github.com/NVlabs/ffhq-dataset",
    ),
    non_commercial=True,
)

# --------------------------------------------------------------------------------------------
# Configs (facts of the official architectures; see ../shared/fixtures/stylegan2/README.md §C)
# --------------------------------------------------------------------------------------------

# NVIDIA 'stylegan2' config (stylegan2-ada-pytorch train.py cfg_specs): fmaps=1 ->
# channel_base 32768, channel_max 512, 8 mapping layers, mbstd group 4. Runtime options
# (num_fp16_res, conv_clamp) are not listed: they differ between networks trained with the
# PyTorch code and TF networks converted by legacy.py, and the loader reads them from the pickle.
_NVIDIA_1024 = MappingProxyType(
    {
        "resolution": 1024,
        "num_ws": 18,
        "z_dim": 512,
        "w_dim": 512,
        "mapping_layers": 8,
        "channel_base": 32768,
        "channel_max": 512,
        "mbstd_group_size": 4,
    }
)

# NVIDIA 'paper256' config: fmaps=0.5 -> channel_base 16384, mbstd group 8.
_NVIDIA_256 = MappingProxyType(
    {
        "resolution": 256,
        "num_ws": 14,
        "z_dim": 512,
        "w_dim": 512,
        "mapping_layers": 8,
        "channel_base": 16384,
        "channel_max": 512,
        "mbstd_group_size": 8,
    }
)

# rosinality Generator(1024, 512, 8, channel_multiplier=2): config-f.
_ROSINALITY_1024 = MappingProxyType(
    {
        "resolution": 1024,
        "num_ws": 18,
        "style_dim": 512,
        "n_mlp": 8,
        "channel_multiplier": 2,
    }
)

# e4e FFHQ: Encoder4Editing(50, 'ir_se'), stylegan_size 1024 -> 18 styles; the decoder inside is
# rosinality's config-f generator (../shared/fixtures/e4e/README.md §1).
_E4E_FFHQ = MappingProxyType(
    {
        "resolution": 1024,
        "num_ws": 18,
        "encoder_type": "Encoder4Editing",
        "encoder_layers": 50,
        "encoder_mode": "ir_se",
        "input_size": 256,
        "style_dim": 512,
        "n_mlp": 8,
        "channel_multiplier": 2,
        "start_from_latent_avg": True,
    }
)

_NVIDIA_PRETRAINED = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained"


def _gdrive_download(file_id: str) -> str:
    return f"https://drive.google.com/uc?export=download&id={file_id}"


def _gdrive_view(file_id: str) -> str:
    return f"https://drive.google.com/file/d/{file_id}/view?usp=sharing"


# --------------------------------------------------------------------------------------------
# Entries
# --------------------------------------------------------------------------------------------

_ENTRIES: tuple[ModelEntry, ...] = (
    # URL: NVlabs/stylegan2-ada-pytorch README, "Data repository" table ("pretrained/ffhq.pkl:
    # FFHQ at 1024x1024, trained using original StyleGAN2") and its projector.py example.
    # NVIDIA publishes no checksum for its pickles.
    ModelEntry(
        name="nvidia-ffhq-1024",
        filename="ffhq.pkl",
        urls=(f"{_NVIDIA_PRETRAINED}/ffhq.pkl",),
        format="nvidia-pkl",
        licence=NVIDIA_ADA,
        config=_NVIDIA_1024,
        description="StyleGAN2 FFHQ 1024 (original StyleGAN2 training), stylegan2-ada-pytorch pickle",
        source="https://github.com/NVlabs/stylegan2-ada-pytorch#data-repository",
    ),
    # URL: stylegan2-ada-pytorch train.py, resume_specs['ffhq256'] (--resume=ffhq256); folder
    # listed in the README as "transfer-learning-source-nets". No checksum published.
    ModelEntry(
        name="nvidia-ffhq-256",
        filename="ffhq-res256-mirror-paper256-noaug.pkl",
        urls=(f"{_NVIDIA_PRETRAINED}/transfer-learning-source-nets/ffhq-res256-mirror-paper256-noaug.pkl",),
        format="nvidia-pkl",
        licence=NVIDIA_ADA,
        config=_NVIDIA_256,
        description="StyleGAN2 FFHQ 256, 'paper256' config, x-flips, no augmentation (NVIDIA transfer-learning source net)",
        source="https://github.com/NVlabs/stylegan2-ada-pytorch/blob/main/train.py (resume_specs)",
    ),
    # URL: stylegan2-ada-pytorch train.py, resume_specs['ffhq1024']. No checksum published.
    ModelEntry(
        name="nvidia-ffhq-1024-noaug",
        filename="ffhq-res1024-mirror-stylegan2-noaug.pkl",
        urls=(f"{_NVIDIA_PRETRAINED}/transfer-learning-source-nets/ffhq-res1024-mirror-stylegan2-noaug.pkl",),
        format="nvidia-pkl",
        licence=NVIDIA_ADA,
        config=_NVIDIA_1024,
        description="StyleGAN2 FFHQ 1024, 'stylegan2' (config-f) settings, x-flips, no augmentation (NVIDIA transfer-learning source net)",
        source="https://github.com/NVlabs/stylegan2-ada-pytorch/blob/main/train.py (resume_specs)",
    ),
    # rosinality's README links only a Drive *folder* of pretrained checkpoints
    # (https://drive.google.com/open?id=1PQutd-JboOCOZqmd95XWxWrO8gGEvRcO) and says the file is
    # produced by `convert_weight.py` from NVIDIA's stylegan2-ffhq-config-f.pkl. The direct file
    # link below is the one omertov/encoder4editing's README gives as "FFHQ StyleGAN ... taken
    # from rosinality" (also used by pSp). No checksum is published. Third-party copies disagree
    # (huggingface.co/wmpscc/StyleGene: d0d7c5e7..., 132,729,083 B; huggingface.co/aaronb/StyleGAN2:
    # 646c7e7c..., 132,717,355 B), so none is recorded as a reference.
    ModelEntry(
        name="rosinality-ffhq-1024",
        filename="stylegan2-ffhq-config-f.pt",
        urls=(_gdrive_download("1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT"),),
        format="rosinality-pt",
        licence=ROSINALITY_CONVERTED,
        config=_ROSINALITY_1024,
        description="StyleGAN2 FFHQ 1024 config-f converted to rosinality's layout (g_ema + latent_avg, ~133 MB)",
        source=(
            "https://github.com/omertov/encoder4editing#pretrained-models (file); "
            "https://github.com/rosinality/stylegan2-pytorch#pretrained-checkpoints (folder)"
        ),
        browser_url=_gdrive_view("1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT"),
    ),
    # URL: omertov/encoder4editing README, "Pretrained Models" table, "FFHQ Inversion". No
    # checksum published. Two independent Hugging Face copies report the same LFS sha256/size
    # (recorded below as mirror hashes, informational only); a third (feng2022/...) differs.
    ModelEntry(
        name="e4e-ffhq-encode",
        filename="e4e_ffhq_encode.pt",
        urls=(_gdrive_download("1cUv_reLE6k3604or78EranS7XzuVMWeO"),),
        format="e4e-pt",
        licence=E4E_FFHQ,
        config=_E4E_FFHQ,
        description="e4e encoder for the FFHQ 1024 StyleGAN2 (encoder + decoder + latent_avg, ~1.2 GB)",
        source="https://github.com/omertov/encoder4editing#pretrained-models",
        browser_url=_gdrive_view("1cUv_reLE6k3604or78EranS7XzuVMWeO"),
        mirror_hashes=(
            MirrorHash(
                "2ace1d9a8c05c10a399bcd500b8dda118f759ff1aac89dbdab7435f2136a0999",
                1201649680,
                "https://huggingface.co/wmpscc/StyleGene/blob/main/e4e_ffhq_encode.pt",
            ),
            MirrorHash(
                "2ace1d9a8c05c10a399bcd500b8dda118f759ff1aac89dbdab7435f2136a0999",
                1201649680,
                "https://huggingface.co/zhengchong/e4e/blob/main/e4e_ffhq_encode.pt",
            ),
        ),
    ),
)

#: Registry name -> entry, in listing order.
REGISTRY: Mapping[str, ModelEntry] = MappingProxyType({e.name: e for e in _ENTRIES})


# --------------------------------------------------------------------------------------------
# Look-ups and the cache
# --------------------------------------------------------------------------------------------


def list_entries() -> list[ModelEntry]:
    """All registry entries, in listing order."""
    return list(REGISTRY.values())


def get_entry(name: str) -> ModelEntry:
    """The registry entry called ``name``.

    Raises
    ------
    ModelError
        Unknown name; the message suggests close names and lists the known ones.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(
            f"unknown model {name!r}{hint} Known models: {', '.join(REGISTRY)} "
            "(see 'facefeat models list')."
        ) from None


def facefeat_home() -> Path:
    """Root of facefeat's cache: ``$FACEFEAT_HOME`` or ``platformdirs.user_cache_dir("facefeat")``."""
    env = os.environ.get("FACEFEAT_HOME")
    if env:
        return Path(env).expanduser().absolute()
    import platformdirs  # small, but only needed here

    return Path(platformdirs.user_cache_dir("facefeat"))


def models_dir() -> Path:
    """``<home>/models``: one sub-folder per registry name."""
    return facefeat_home() / "models"


def _entry(name_or_entry: str | ModelEntry) -> ModelEntry:
    return name_or_entry if isinstance(name_or_entry, ModelEntry) else get_entry(name_or_entry)


def cache_path(name_or_entry: str | ModelEntry) -> Path:
    """Where a registry model lives in the cache: ``<home>/models/<name>/<filename>``."""
    entry = _entry(name_or_entry)
    return models_dir() / entry.name / entry.filename


def sha256_text(entry: ModelEntry) -> str:
    """The expected sha256, or a sentence saying none is published."""
    return entry.sha256 if entry.sha256 else "not published upstream (unverified)"


def _looks_like_path(text: str) -> bool:
    return (
        os.sep in text
        or (os.altsep is not None and os.altsep in text)
        or text.startswith(("~", "."))
        or Path(text).suffix.lower() in {".pkl", ".pt", ".pth", ".safetensors", ".json"}
    )


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """Path of a model file given a path or a registry name.

    Parameters
    ----------
    name_or_path : str or path-like
        An existing path (used as is) or a registry name (resolved in the cache).

    Returns
    -------
    Path

    Raises
    ------
    ModelError
        A registry model is not in the cache (the message gives the pull command, the exact
        path to copy the file to on an offline machine, and the expected sha256); a path does
        not exist; or the name is unknown.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        return path
    if text in REGISTRY:
        entry = REGISTRY[text]
        target = cache_path(entry)
        if target.is_file():
            return target
        lines = [
            f"model {entry.name!r} is not in the cache: {target} does not exist.",
            f"  fix: run 'facefeat models pull {entry.name}'",
            f"  without internet: download {entry.filename} elsewhere from {entry.urls[0]}",
        ]
        if entry.browser_url:
            lines.append(f"    (in a browser: {entry.browser_url})")
        lines += [
            "    and copy it to exactly this path:",
            f"    {target}",
            f"  expected sha256: {sha256_text(entry)}",
            "  (the cache root is $FACEFEAT_HOME; check the copy with 'facefeat models verify "
            f"{entry.name}')",
        ]
        raise ModelError("\n".join(lines))
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(text):
        raise ModelError(
            f"{path}: model file not found; give an existing checkpoint path or a registry name "
            f"({', '.join(REGISTRY)})"
        )
    get_entry(text)  # raises the unknown-name error with suggestions
    raise AssertionError("unreachable")  # pragma: no cover


def validate_entry(entry: ModelEntry) -> list[str]:
    """Problems with an entry's data (empty list = fine); used by tests and ``pull``."""
    problems = []
    if not entry.name or "/" in entry.name or entry.name != entry.name.strip():
        problems.append("name must be non-empty without '/' or surrounding spaces")
    if not entry.filename or "/" in entry.filename or entry.filename in {".", ".."}:
        problems.append("filename must be a plain file name")
    if entry.format not in FORMATS:
        problems.append(f"format {entry.format!r} not in {FORMATS}")
    if not entry.urls or not all(u.startswith(("https://", "http://")) for u in entry.urls):
        problems.append("needs at least one http(s) URL")
    if entry.sha256 is not None and not _SHA256_RE.match(entry.sha256):
        problems.append("sha256 must be 64 lowercase hex digits or None")
    if not entry.licence.short or not entry.licence.text:
        problems.append("licence needs a short name and a text")
    for key in ("resolution", "num_ws"):
        if key not in entry.config:
            problems.append(f"config lacks {key!r}")
    for mirror in entry.mirror_hashes:
        if not _SHA256_RE.match(mirror.sha256):
            problems.append(f"mirror hash from {mirror.source} is not a sha256")
    return problems


# --------------------------------------------------------------------------------------------
# Checking cached files
# --------------------------------------------------------------------------------------------


def recorded_sha256_path(path: str | os.PathLike) -> Path:
    """``<file>.sha256``: the hash recorded when ``pull`` installed the file (sha256sum format)."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def write_recorded_sha256(path: str | os.PathLike, digest: str) -> None:
    """Record ``digest`` next to ``path`` (``<digest>  <name>``, as ``sha256sum`` writes it)."""
    path = Path(path)
    recorded_sha256_path(path).write_text(f"{digest}  {path.name}\n", encoding="utf-8")


def recorded_sha256(path: str | os.PathLike) -> str | None:
    """The hash recorded at download time, or None (file placed by hand, or unreadable record)."""
    try:
        text = recorded_sha256_path(path).read_text(encoding="utf-8").split()
    except OSError:
        return None
    return text[0] if text and _SHA256_RE.match(text[0]) else None


@dataclass(frozen=True)
class CacheStatus:
    """Result of :func:`check_cached`.

    ``status`` is ``ok`` (matches the published sha256), ``mismatch`` (differs from the
    published sha256, or from the hash recorded at download time), ``missing`` (not in the
    cache) or ``unverified`` (present, no published sha256 to compare with).
    """

    name: str
    status: str
    path: Path
    sha256: str | None
    detail: str


def check_cached(name_or_entry: str | ModelEntry) -> CacheStatus:
    """Re-hash a cached model and compare it with what is known about it."""
    from facefeat.io.hashing import sha256_file

    entry = _entry(name_or_entry)
    path = cache_path(entry)
    if not path.is_file():
        part = path.with_name(path.name + ".part")
        extra = f"; a partial download ({part.stat().st_size} bytes) is waiting in {part.name}" if part.is_file() else ""
        return CacheStatus(entry.name, "missing", path, None, f"run 'facefeat models pull {entry.name}'{extra}")
    digest = sha256_file(path)
    recorded = recorded_sha256(path)
    if entry.sha256:
        if digest == entry.sha256:
            return CacheStatus(entry.name, "ok", path, digest, "matches the published sha256")
        return CacheStatus(
            entry.name, "mismatch", path, digest,
            f"expected {entry.sha256}, got {digest}; delete the file and pull it again",
        )
    if recorded and recorded != digest:
        return CacheStatus(
            entry.name, "mismatch", path, digest,
            f"changed since download: recorded {recorded}, now {digest}; pull it again with --force",
        )
    notes = ["no published sha256"]
    if recorded:
        notes.append("unchanged since download")
    same = [m.source for m in entry.mirror_hashes if m.sha256 == digest]
    if same:
        notes.append(f"same bytes as third-party copies ({len(same)}): {same[0]}")
    return CacheStatus(entry.name, "unverified", path, digest, "; ".join(notes))
