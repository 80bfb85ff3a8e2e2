"""Quality of a generator without downloaded networks: KID / FID in a feature space the user
chooses, and how well the generator reconstructs held-out real photos.

Feature networks
----------------
FID and KID are distances between the distributions of real and generated images in the
feature space of some network. The usual one (Inception-v3) cannot be downloaded here, so:

* **default**: dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``, the
  128-D descriptor of :mod:`facefeat.face`, shipped by ``face-recognition-models``; no
  download). It sees the face through dlib's own 150x150 chip. Aligned crops (real or
  generated) all share the FFHQ layout, so the chip is cut with one fixed 68-point template
  (:data:`FFHQ_LANDMARK_TEMPLATE`, the mean landmarks of 69 FFHQ-aligned faces) instead of
  detecting landmarks on every generated image, which could fail exactly on the bad samples a
  metric must count. The descriptor is independent of the discriminator being trained (a
  metric in D's own feature space rewards D's blind spots), but it was trained to recognise
  identity: it is insensitive to lighting, expression and background, and FID/KID in it measure
  "do the generated faces look like plausible, diverse people". Numbers are not comparable
  with Inception FIDs from papers.
* **a network file** the user points to: TorchScript (``.pt``, e.g. NVIDIA's
  ``inception-2015-12-05.pt``, which stylegan2-ada-pytorch's metrics use) or a ``torch.export``
  program (``.pt2``). It is called as ``net(uint8 [B, 3, H, W], return_features=True)`` when it
  accepts that argument (NVIDIA's convention), else ``net(uint8 [B, 3, H, W])``, and must
  return ``[B, D]`` features. Neither format runs arbitrary Python when loaded.

Every result names the network (file and sha256) in ``feature_network``.

KID (Binkowski et al. 2018) is unbiased and usable with a few hundred images, which is what a
clinical cohort has; FID is biased upward at small N (and needs N well above the feature
dimension for a full-rank covariance). Both follow stylegan2-ada-pytorch's ``metrics``
(KID: cubic polynomial kernel, 100 subsets of at most 1000).

Projection quality
------------------
Held-out real crops are projected into the current generator; the reconstruction error (MSE
and PSNR on the [0, 1] scale) and, with the dlib network, the identity distance between photo
and reconstruction (< 0.6 is dlib's "same person") say whether the generator can represent
the cohort. The projector is :func:`facefeat.inversion.projection.project` (MSE loss) when it
is installed, else the short MSE-only projection :func:`project_mse` here; the result names it.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from facefeat.errors import ModelError

log = logging.getLogger(__name__)

#: Mean dlib 68-point landmarks of FFHQ-aligned crops, as fractions of the crop side (x, y).
#: Computed from the 69 faces of ``tests/data/ffhq_align/faces.json`` (dlib landmarks mapped
#: through each face's alignment quad; the astronaut's false detection excluded); the spread
#: is 0.02 of the side on average. ``tests/training/test_metrics.py`` recomputes it.
FFHQ_LANDMARK_TEMPLATE = np.array([
    [0.2243, 0.4896], [0.2256, 0.5648], [0.2322, 0.6385], [0.2452, 0.7119], [0.2713, 0.7825], [0.3147, 0.8434],
    [0.3688, 0.8945], [0.4275, 0.9359], [0.4974, 0.9493], [0.5706, 0.9382], [0.6355, 0.8992], [0.6938, 0.8504],
    [0.7409, 0.7915], [0.7700, 0.7219], [0.7852, 0.6467], [0.7936, 0.5697], [0.7970, 0.4914], [0.2776, 0.4292],
    [0.3089, 0.3957], [0.3556, 0.3840], [0.4046, 0.3892], [0.4502, 0.4066], [0.5439, 0.4076], [0.5932, 0.3900],
    [0.6443, 0.3863], [0.6922, 0.3996], [0.7275, 0.4327], [0.4969, 0.4629], [0.4951, 0.5102], [0.4940, 0.5569],
    [0.4928, 0.6054], [0.4386, 0.6392], [0.4650, 0.6499], [0.4943, 0.6584], [0.5254, 0.6506], [0.5540, 0.6410],
    [0.3329, 0.4750], [0.3622, 0.4584], [0.3956, 0.4581], [0.4260, 0.4784], [0.3943, 0.4836], [0.3608, 0.4845],
    [0.5738, 0.4797], [0.6034, 0.4591], [0.6378, 0.4602], [0.6664, 0.4780], [0.6392, 0.4856], [0.6058, 0.4849],
    [0.3863, 0.7350], [0.4245, 0.7162], [0.4662, 0.7111], [0.4962, 0.7163], [0.5268, 0.7096], [0.5728, 0.7193],
    [0.6166, 0.7368], [0.5740, 0.7791], [0.5293, 0.7951], [0.4956, 0.7980], [0.4626, 0.7937], [0.4229, 0.7773],
    [0.4031, 0.7365], [0.4654, 0.7308], [0.4961, 0.7340], [0.5279, 0.7312], [0.5997, 0.7402], [0.5274, 0.7613],
    [0.4951, 0.7646], [0.4647, 0.7604],
])

#: dlib's threshold for "same person" on the descriptor's Euclidean distance.
DLIB_SAME_PERSON = 0.6


# --------------------------------------------------------------------------------------------
# Feature networks
# --------------------------------------------------------------------------------------------

class FeatureNetwork:
    """A fixed feature extractor for FID/KID: ``net(uint8 [B, 3, H, W]) -> float64 (B, D)``.

    Attributes
    ----------
    name : str
    info : dict
        JSON-able description (name, file, sha256, feature dimension, input).
    """

    name = "feature-network"

    def __call__(self, images: torch.Tensor) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def info(self) -> dict[str, Any]:
        return {"name": self.name}


class DlibFaceDescriptor(FeatureNetwork):
    """dlib's 128-D face descriptor of FFHQ-aligned crops (chips cut with a fixed template).

    Parameters
    ----------
    padding : float
        dlib's chip padding (0.25, what the network was trained with).
    """

    name = "dlib_face_recognition_resnet_model_v1"

    def __init__(self, padding: float = 0.25) -> None:
        self.padding = float(padding)
        self._model = None

    @property
    def info(self) -> dict[str, Any]:
        from facefeat.face.dlib_models import DLIB_MODEL_SHA256, dlib_model_path

        return {"name": self.name, "file": dlib_model_path("face_descriptor").name,
                "sha256": DLIB_MODEL_SHA256["face_descriptor"], "dim": 128,
                "input": "150x150 dlib face chip cut from the aligned crop with the fixed FFHQ landmark template",
                "package": "face-recognition-models"}

    def _load(self):
        if self._model is None:
            import dlib

            from facefeat.face.dlib_models import dlib_model_path

            self._model = dlib.face_recognition_model_v1(str(dlib_model_path("face_descriptor")))
        return self._model

    @functools.lru_cache(maxsize=8)
    def _chip_details(self, height: int, width: int):
        import dlib

        # dlib points are integers: place the template at 1000 px for precision, then scale.
        virtual = 1000.0
        pts = np.rint(FFHQ_LANDMARK_TEMPLATE * virtual - 0.5).astype(int)
        rect = dlib.rectangle(int(pts[:, 0].min()), int(pts[:, 1].min()), int(pts[:, 0].max()), int(pts[:, 1].max()))
        shape = dlib.full_object_detection(rect, dlib.points([dlib.point(int(x), int(y)) for x, y in pts]))
        d = dlib.get_face_chip_details(shape, 150, self.padding)
        sx, sy = width / virtual, height / virtual
        r = d.rect
        # pixel centres: x_small + 0.5 = (x_virtual + 0.5) * scale
        rect = dlib.drectangle((r.left() + 0.5) * sx - 0.5, (r.top() + 0.5) * sy - 0.5,
                               (r.right() + 0.5) * sx - 0.5, (r.bottom() + 0.5) * sy - 0.5)
        return dlib.chip_details(rect, dlib.chip_dims(150, 150), d.angle)

    def chips(self, images: torch.Tensor) -> list[np.ndarray]:
        """The 150x150 uint8 chips dlib's network sees."""
        import dlib

        arr = _to_hwc_uint8(images)
        details = self._chip_details(arr.shape[1], arr.shape[2])
        return [np.ascontiguousarray(dlib.extract_image_chip(np.ascontiguousarray(a), details)) for a in arr]

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, 128))
        out = self._load().compute_face_descriptor(self.chips(images), 0)
        return np.array([np.array(v) for v in out], dtype=np.float64)


class TorchScriptFeatures(FeatureNetwork):
    """A TorchScript feature network from a file (see the module notes for the call)."""

    def __init__(self, path: str | os.PathLike, *, device: torch.device | str = "cpu") -> None:
        from facefeat.io.hashing import sha256_file

        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise ModelError(f"{self.path}: feature network not found; give a TorchScript file (e.g. NVIDIA's "
                             f"inception-2015-12-05.pt) or leave --metric-network out to use dlib's face descriptor")
        self.device = torch.device(device)
        self.sha256 = sha256_file(self.path)
        self.name = self.path.name
        try:
            if self.path.suffix == ".pt2":  # torch.export.save
                self.net = torch.export.load(str(self.path)).module().to(self.device)
                self.kind = "torch.export"
            else:
                with warnings.catch_warnings():  # torch.jit is deprecated but NVIDIA's Inception is TorchScript
                    warnings.simplefilter("ignore", DeprecationWarning)
                    self.net = torch.jit.load(str(self.path), map_location=self.device).eval()
                self.kind = "TorchScript"
        except Exception as exc:  # torch raises RuntimeError / ValueError / zip errors for other files
            raise ModelError(f"{self.path}: not a TorchScript (.pt) or torch.export (.pt2) program "
                             f"({type(exc).__name__}: {str(exc)[:200]}); save the network with torch.jit.save or "
                             f"torch.export.save") from exc
        self._kwargs: dict[str, Any] | None = None

    @property
    def info(self) -> dict[str, Any]:
        return {"name": self.name, "file": str(self.path), "sha256": self.sha256, "kind": self.kind,
                "input": "uint8 [B, 3, H, W]", "call": "return_features=True" if self._kwargs else "plain"}

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        x = images.to(self.device, torch.uint8)
        if self._kwargs is None:
            try:
                out = self.net(x, return_features=True)
                self._kwargs = {"return_features": True}
            except Exception:  # the signature has no such argument (the error type varies by kind)
                self._kwargs = {}
                out = self.net(x)
        else:
            out = self.net(x, **self._kwargs)
        out = out[0] if isinstance(out, (tuple, list)) else out
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise ModelError(f"{self.path}: returned shape {tuple(out.shape)}, expected [batch, features]")
        return out.detach().to("cpu", torch.float64).numpy()


def load_feature_network(spec: str | os.PathLike | FeatureNetwork | None = None, *,
                         device: torch.device | str = "cpu") -> FeatureNetwork:
    """``None`` / ``"dlib"``: :class:`DlibFaceDescriptor`; a path: :class:`TorchScriptFeatures`;
    a :class:`FeatureNetwork` (any callable with ``info``) is returned as is."""
    if isinstance(spec, FeatureNetwork):
        return spec
    if spec is None or str(spec) == "dlib":
        return DlibFaceDescriptor()
    return TorchScriptFeatures(spec, device=device)


def _to_hwc_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    a = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if a.ndim != 4:
        raise ValueError(f"images must be [B, 3, H, W] or (B, H, W, 3), got {a.shape}")
    if a.shape[1] == 3 and a.shape[-1] != 3:
        a = a.transpose(0, 2, 3, 1)
    if a.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {a.dtype}")
    return a


def compute_features(net: FeatureNetwork, images: torch.Tensor, *, batch_size: int = 64) -> np.ndarray:
    """Features of uint8 images ``[N, 3, H, W]`` in batches."""
    parts = [net(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0))


# --------------------------------------------------------------------------------------------
# Distances
# --------------------------------------------------------------------------------------------

def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """FID between two feature sets ``(N, D)``: ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``."""
    import scipy.linalg

    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("FID needs at least 2 images on each side")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s_a @ s_b)
    return float(np.square(mu_a - mu_b).sum() + np.trace(s_a + s_b - 2 * np.real(root)))


def kernel_distance(feats_real: np.ndarray, feats_fake: np.ndarray, *, num_subsets: int = 100,
                    max_subset_size: int = 1000, seed: int = 0) -> float:
    """KID: unbiased MMD^2 with the kernel ``(x.y / D + 1)^3``, averaged over random subsets
    (stylegan2-ada-pytorch's ``compute_kid``; subsets drawn with ``seed``)."""
    real, fake = np.asarray(feats_real, np.float64), np.asarray(feats_fake, np.float64)
    n = real.shape[1]
    m = min(len(real), len(fake), max_subset_size)
    if m < 2:
        raise ValueError("KID needs at least 2 images on each side")
    rng = np.random.default_rng(seed)
    t = 0.0
    for _ in range(num_subsets):
        x = fake[rng.choice(len(fake), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(t / num_subsets / m)


# --------------------------------------------------------------------------------------------
# Generating and projecting
# --------------------------------------------------------------------------------------------

def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output near [-1, 1] -> uint8 ``[B, 3, R, R]`` (NVIDIA's ``* 127.5 + 128`` clamp)."""
    return (images.detach() * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu()


@torch.no_grad()
def generate_images(G, n: int, *, seed: int = 0, batch_size: int = 16, truncation_psi: float = 1.0,
                    noise_mode: str = "random", device: torch.device | str | None = None) -> torch.Tensor:
    """``n`` uint8 images ``[n, 3, R, R]`` from z ~ N(0, I) drawn with ``seed`` (CPU generator)."""
    device = torch.device(device) if device is not None else G.mapping.w_avg.device
    gen = torch.Generator().manual_seed(int(seed))
    noise_gen = torch.Generator(device).manual_seed(int(seed) + 1)
    z = torch.randn(n, G.z_dim, generator=gen)
    out = []
    for i in range(0, n, batch_size):
        ws = G.mapping(z[i:i + batch_size].to(device), truncation_psi=truncation_psi)
        out.append(to_uint8(G.synthesis(ws, noise_mode=noise_mode, generator=noise_gen)))
    return torch.cat(out) if out else torch.zeros(0, 3, G.img_resolution, G.img_resolution, dtype=torch.uint8)


def project_mse(G, targets: torch.Tensor, *, num_steps: int = 100, lr: float = 0.1, space: str = "wplus",
                w_avg_samples: int = 2000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A short MSE-only projection (Adam from the mean w, cosine lr ramp-down, stored noise).

    The fallback when :mod:`facefeat.inversion.projection` is not available. Returns
    ``(ws [B, num_ws, w_dim], images [B, 3, R, R] near [-1, 1])``; G is not modified.
    """
    device = G.mapping.w_avg.device
    target = targets.to(device, torch.float32) / 127.5 - 1
    w_avg = G.mean_w(w_avg_samples, seed=seed).to(device)
    rows = G.num_ws if space == "wplus" else 1
    latent = w_avg.reshape(1, 1, -1).repeat(len(target), rows, 1).clone().requires_grad_(True)
    opt = torch.optim.Adam([latent], lr=lr, betas=(0.9, 0.999))
    for step in range(num_steps):
        t = step / max(num_steps, 1)
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * t)) if t > 0.75 else lr
        ws = latent if rows == G.num_ws else latent.expand(-1, G.num_ws, -1)
        img = G.synthesis(ws, noise_mode="const")
        loss = (img - target).square().flatten(1).mean(1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        ws = latent.detach() if rows == G.num_ws else latent.detach().expand(-1, G.num_ws, -1)
        return ws.cpu(), G.synthesis(ws, noise_mode="const").cpu()


def projection_quality(G, targets: torch.Tensor, *, num_steps: int = 100, space: str = "wplus",
                       feature_network: FeatureNetwork | None = None, seed: int = 0,
                       use_inversion: bool = True) -> dict[str, Any]:
    """Project held-out real crops (uint8 ``[N, 3, R, R]``) through ``G``; reconstruction quality.

    Returns
    -------
    dict
        ``proj_mse`` and ``proj_psnr`` (means; [0, 1] scale), ``proj_mse_per_image``, the
        ``projector`` used and its settings, and with a feature network
        ``proj_feature_distance`` (mean Euclidean distance between the features of photo and
        reconstruction) plus, for dlib's descriptor, ``proj_same_person`` (fraction < 0.6).
    """
    G_req = [p.requires_grad for p in G.parameters()]
    G.requires_grad_(False)
    try:
        images = None
        projector: dict[str, Any] = {}
        if use_inversion:
            try:
                from facefeat.inversion.projection import project
            except ImportError:
                project = None
            if project is not None:
                res = project(G, targets.to(torch.float32), space=space, num_steps=num_steps, loss="mse",
                              seed=seed, device=G.mapping.w_avg.device, return_images=True,
                              w_avg_samples=2000)
                images = res.images
                projector = {"name": "facefeat.inversion.projection.project", "params": res.params}
        if images is None:
            _, images = project_mse(G, targets, num_steps=num_steps, space=space, seed=seed)
            projector = {"name": "facefeat.training.metrics.project_mse",
                         "params": {"num_steps": num_steps, "space": space, "loss": "mse", "lr": 0.1,
                                    "noise_mode": "const"}}
    finally:
        for p, r in zip(G.parameters(), G_req):
            p.requires_grad_(r)
    synth = ((images.to(torch.float32) + 1) * 0.5).clamp(0, 1)
    real = targets.to(torch.float32) / 255.0
    mse = (synth - real).square().flatten(1).mean(1).to(torch.float64)
    out: dict[str, Any] = {
        "proj_mse": float(mse.mean()), "proj_psnr": float((-10 * torch.log10(mse.clamp_min(1e-12))).mean()),
        "proj_mse_per_image": [float(v) for v in mse], "projector": projector, "n_projected": len(targets),
    }
    if feature_network is not None:
        fa, fb = feature_network(targets), feature_network(to_uint8(images))
        dist = np.linalg.norm(fa - fb, axis=1)
        out["proj_feature_distance"] = float(dist.mean())
        if isinstance(feature_network, DlibFaceDescriptor):
            out["proj_same_person"] = float((dist < DLIB_SAME_PERSON).mean())
    return out


def evaluate_generator(G, *, real_images: torch.Tensor | None = None, real_features: np.ndarray | None = None,
                       heldout: torch.Tensor | None = None, metrics: Sequence[str] = ("kid", "fid", "proj"),
                       feature_network: FeatureNetwork | None = None, num_generated: int | None = None,
                       seed: int = 0, proj_steps: int = 100, proj_space: str = "wplus") -> dict[str, Any]:
    """KID / FID against the real crops and projection quality of the held-out crops.

    Parameters
    ----------
    G : Generator
        Usually ``G_ema``; not modified.
    real_images : Tensor, optional
        uint8 ``[N, 3, R, R]`` (or pass their ``real_features``).
    heldout : Tensor, optional
        uint8 held-out crops for ``"proj"``.
    metrics : sequence of {"kid", "fid", "proj"}
    feature_network : FeatureNetwork, optional
        Default: dlib's face descriptor.
    num_generated : int, optional
        Generated images (default: as many as real ones, at least 500).

    Returns
    -------
    dict
        ``feature_network`` (what the distances were measured with), ``kid``, ``fid``,
        ``n_real``, ``n_generated``, the ``proj_*`` entries and ``seconds``.
    """
    import time

    t0 = time.perf_counter()
    net = feature_network if feature_network is not None else DlibFaceDescriptor()
    out: dict[str, Any] = {"feature_network": net.info}
    if {"kid", "fid"} & set(metrics):
        if real_features is None:
            if real_images is None:
                raise ValueError("evaluate_generator: KID/FID need real_images or real_features")
            real_features = compute_features(net, real_images)
        n_gen = num_generated if num_generated is not None else max(len(real_features), 500)
        fake = generate_images(G, n_gen, seed=seed)
        fake_features = compute_features(net, fake)
        out.update({"n_real": int(len(real_features)), "n_generated": int(n_gen)})
        if "kid" in metrics:
            out["kid"] = kernel_distance(real_features, fake_features, seed=seed)
        if "fid" in metrics:
            out["fid"] = frechet_distance(real_features, fake_features)
            dim = real_features.shape[1]
            if min(len(real_features), n_gen) < 2 * dim:
                out["fid_note"] = (f"FID from {min(len(real_features), n_gen)} images in a {dim}-D space is biased "
                                   f"upward; compare runs with the same image counts or use KID")
    if "proj" in metrics and heldout is not None and len(heldout):
        out.update(projection_quality(G, heldout, num_steps=proj_steps, space=proj_space, feature_network=net,
                                      seed=seed))
    out["seconds"] = time.perf_counter() - t0
    return out
