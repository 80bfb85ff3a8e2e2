"""KID / FID, the dlib feature network on aligned crops, TorchScript networks, projection quality."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facefeat.errors import ModelError
from facefeat.training import metrics as M
from tests.conftest import DATA
from tests.training.conftest import ALIGNED, tiny_generator


def test_fid_and_kid_on_gaussians():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3000, 8))
    b = rng.standard_normal((3000, 8))
    c = rng.standard_normal((3000, 8)) + np.array([1.0, 0, 0, 0, 0, 0, 0, 0])
    assert M.frechet_distance(a, b) == pytest.approx(0.0, abs=0.05)
    assert M.frechet_distance(a, c) == pytest.approx(1.0, abs=0.1)  # |mu_a - mu_c|^2 with equal covariances
    kw = dict(num_subsets=10, max_subset_size=500)
    same, shifted = M.kernel_distance(a, b, **kw), M.kernel_distance(a, c, **kw)
    assert abs(same) < 5e-3 and shifted > 10 * abs(same)
    assert M.kernel_distance(a, c, seed=1, num_subsets=2) == M.kernel_distance(a, c, seed=1, num_subsets=2)


def test_kid_is_unbiased_for_small_samples():
    rng = np.random.default_rng(1)
    vals = [M.kernel_distance(rng.standard_normal((40, 16)), rng.standard_normal((40, 16)), num_subsets=5, seed=i)
            for i in range(40)]
    assert abs(np.mean(vals)) < 3 * np.std(vals) / np.sqrt(len(vals))


def test_landmark_template_is_the_mean_of_the_fixture_faces():
    doc = json.loads((DATA / "ffhq_align" / "faces.json").read_text())
    pts = []
    for face in doc["faces"]:
        if face["id"] == "astronaut_f00":  # the detector's false positive on the mission patch
            continue
        q = np.array(face["geometry"]["quad_original_image"], dtype=np.float64)
        p = np.array(face["landmarks"], dtype=np.float64)
        ex, ey = q[3] - q[0], q[1] - q[0]
        pts.append(np.stack([(p - q[0]) @ ex / (ex @ ex), (p - q[0]) @ ey / (ey @ ey)], axis=1))
    assert len(pts) == 69
    np.testing.assert_allclose(np.mean(pts, axis=0), M.FFHQ_LANDMARK_TEMPLATE, atol=6e-5)


@pytest.fixture(scope="module")
def crops256() -> torch.Tensor:
    import PIL.Image

    arr = np.stack([np.asarray(PIL.Image.open(p).convert("RGB")) for p in ALIGNED[:4]])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def test_dlib_template_chips_match_detected_landmarks(crops256):
    """The fixed-template descriptor of an aligned crop is close (same person) to dlib's
    descriptor computed from the landmarks detected on that crop."""
    import dlib

    from facefeat.face.detect import FaceDetector
    from facefeat.face.dlib_models import dlib_model_path
    from facefeat.face.landmarks import LandmarkPredictor

    net = M.DlibFaceDescriptor()
    feats = net(crops256)
    assert feats.shape == (4, 128)
    model = dlib.face_recognition_model_v1(str(dlib_model_path("face_descriptor")))
    det, pred = FaceDetector(), LandmarkPredictor()
    dists = []
    for img, f in zip(crops256.permute(0, 2, 3, 1).numpy(), feats):
        img = np.ascontiguousarray(img)
        faces = det.detect(img)
        if not faces:
            continue
        box = max(faces, key=lambda d: d.area).box
        pts = np.rint(pred.predict(img, box)).astype(int)
        shape = dlib.full_object_detection(dlib.rectangle(*[int(v) for v in box]),
                                           dlib.points([dlib.point(int(x), int(y)) for x, y in pts]))
        dists.append(np.linalg.norm(np.array(model.compute_face_descriptor(img, shape, 0, 0.25)) - f))
    assert len(dists) >= 3 and max(dists) < 0.35
    between = np.linalg.norm(feats[:, None] - feats[None], axis=2)[np.triu_indices(4, 1)]
    assert np.median(between) > 0.4  # different people stay apart
    assert net.info["sha256"].startswith("55533b28") and net.info["name"] == "dlib_face_recognition_resnet_model_v1"


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_feature_network(tmp_path):
    class Net(torch.nn.Module):
        def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            return x.float().mean(dim=[2, 3])

    class Plain(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.float().amax(dim=[2, 3])

    x = torch.randint(0, 255, (3, 3, 8, 8), dtype=torch.uint8)
    torch.jit.save(torch.jit.script(Net()), tmp_path / "net.pt")
    torch.jit.save(torch.jit.script(Plain()), tmp_path / "plain.pt")
    net = M.load_feature_network(tmp_path / "net.pt")
    np.testing.assert_allclose(net(x), x.double().mean(dim=[2, 3]).numpy(), rtol=1e-6)
    assert net.info["call"] == "return_features=True" and len(net.info["sha256"]) == 64
    plain = M.load_feature_network(str(tmp_path / "plain.pt"))
    np.testing.assert_allclose(plain(x), x.double().amax(dim=[2, 3]).numpy())
    ep = torch.export.export(Plain(), (x,))
    torch.export.save(ep, tmp_path / "plain.pt2")
    exported = M.load_feature_network(tmp_path / "plain.pt2")
    np.testing.assert_allclose(exported(x), x.double().amax(dim=[2, 3]).numpy())
    assert exported.info["kind"] == "torch.export"
    with pytest.raises(ModelError, match="not found"):
        M.load_feature_network(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    with pytest.raises(ModelError, match="TorchScript \\(.pt\\) or torch.export"):
        M.load_feature_network(tmp_path / "junk.pt")
    assert isinstance(M.load_feature_network(None), M.DlibFaceDescriptor)


def test_projection_quality_own_projector_improves_on_the_mean_face():
    G = tiny_generator(16).eval()
    with torch.no_grad():
        target = M.to_uint8(G(torch.randn(2, 16, generator=torch.Generator().manual_seed(0))))
    before = {k: v.clone() for k, v in G.state_dict().items()}
    q0 = M.projection_quality(G, target, num_steps=0, use_inversion=False)
    q = M.projection_quality(G, target, num_steps=30, use_inversion=False)
    assert q["projector"]["name"] == "facefeat.training.metrics.project_mse"
    assert q["proj_mse"] < q0["proj_mse"] and q["proj_psnr"] > q0["proj_psnr"]
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in before.items())  # G is not trained
    assert all(p.requires_grad for p in G.parameters())  # and its flags are restored


def test_evaluate_generator_names_the_feature_network(crops256):
    import PIL.Image

    class Mean(M.FeatureNetwork):
        name = "channel-means"

        def __call__(self, images):
            return images.double().mean(dim=[2, 3]).numpy()

    G = tiny_generator(16).eval()
    reals = torch.nn.functional.interpolate(crops256.float(), size=(16, 16), mode="area").round().to(torch.uint8)
    res = M.evaluate_generator(G, real_images=reals, heldout=reals[:2], metrics=("kid", "fid", "proj"),
                               feature_network=Mean(), num_generated=12, proj_steps=2)
    assert res["feature_network"] == {"name": "channel-means"}
    assert {"kid", "fid", "proj_mse", "proj_psnr", "proj_feature_distance"} <= set(res)
    assert res["n_real"] == 4 and res["n_generated"] == 12
    assert np.isfinite([res["kid"], res["fid"], res["proj_mse"]]).all()
