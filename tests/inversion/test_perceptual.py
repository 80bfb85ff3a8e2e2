"""LPIPS-VGG from weight files on disk: strict key mapping, the distance against a direct
re-statement of the LPIPS v0.1 definition, and use as a projection loss.

No real VGG16/LPIPS weights exist offline here, so the files are written by the test in the
exact formats (torchvision ``vgg16`` state_dict with its classifier, lpips ``vgg.pth``) with
random values.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from facefeat.errors import ConfigError, ModelError
from facefeat.inversion import load_lpips_vgg, project
from tests.inversion.conftest import render_targets

CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256), (14, 256, 256),
         (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512), (26, 512, 512), (28, 512, 512)]


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("lpips")
    g = torch.Generator().manual_seed(0)
    vgg = {}
    for idx, cin, cout in CONVS:
        vgg[f"features.{idx}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2.0 / (9 * cin)) ** 0.5
        vgg[f"features.{idx}.bias"] = torch.randn(cout, generator=g) * 0.01
    for idx, shape in ((0, (16, 8)), (3, (16, 16)), (6, (10, 16))):  # torchvision keeps the classifier
        vgg[f"classifier.{idx}.weight"] = torch.randn(*shape, generator=g)
        vgg[f"classifier.{idx}.bias"] = torch.randn(shape[0], generator=g)
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for i, c in enumerate((64, 128, 256, 512, 512))}
    torch.save(vgg, d / "vgg16-397923af.pth")
    torch.save(lin, d / "vgg.pth")
    return d / "vgg16-397923af.pth", d / "vgg.pth", vgg, lin


def _reference_lpips(x, y, vgg, lin):
    """LPIPS v0.1 (lpips package, net='vgg') written out directly from its definition."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).reshape(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).reshape(1, 3, 1, 1)

    def taps(z):
        z = (z - shift) / scale
        out = []
        for idx, _, _ in CONVS:
            if idx in (5, 10, 17, 24):
                z = F.max_pool2d(z, 2)
            z = F.relu(F.conv2d(z, vgg[f"features.{idx}.weight"], vgg[f"features.{idx}.bias"], padding=1))
            if idx in (2, 7, 14, 21, 28):
                out.append(z / (z.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    total = 0
    for k, (a, b) in enumerate(zip(taps(x), taps(y))):
        total = total + F.conv2d((a - b) ** 2, lin[f"lin{k}.model.1.weight"]).mean(dim=(2, 3)).flatten()
    return total


def test_distance_matches_definition(weight_files):
    vgg_path, lin_path, vgg, lin = weight_files
    model = load_lpips_vgg(vgg_path, lin_path)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 16, 16, generator=g) * 2 - 1
    y = torch.rand(3, 3, 16, 16, generator=g) * 2 - 1
    d = model(x, y)
    assert d.shape == (3,)
    assert torch.allclose(d, _reference_lpips(x, y, vgg, lin), rtol=1e-4, atol=1e-6)
    assert torch.allclose(model(x, x), torch.zeros(3), atol=1e-7)
    assert torch.allclose(model(x, y), model(y, x), rtol=1e-5)
    assert model.provenance["kind"] == "lpips-vgg-v0.1" and len(model.provenance["vgg16_sha256"]) == 64


def test_large_images_are_area_downsampled(weight_files):
    vgg_path, lin_path, vgg, lin = weight_files
    model = load_lpips_vgg(vgg_path, lin_path, max_size=16)
    x, y = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    small = [F.interpolate(v, size=(16, 16), mode="area") for v in (x, y)]
    assert torch.allclose(model(x, y), _reference_lpips(*small, vgg, lin), rtol=1e-4)
    assert torch.allclose(model(x, y), model(*small), rtol=1e-6)



def test_strict_loading_errors(weight_files, tmp_path):
    vgg_path, lin_path, vgg, lin = weight_files
    bad = dict(vgg)
    del bad["features.28.bias"]
    bad["features.99.weight"] = torch.zeros(1)
    torch.save(bad, tmp_path / "bad_vgg.pth")
    with pytest.raises(ModelError, match=r"missing keys \['features.28.bias'\].*unexpected keys \['features.99.weight'\]"):
        load_lpips_vgg(tmp_path / "bad_vgg.pth", lin_path)
    wrong = dict(lin)
    wrong["lin0.model.1.weight"] = torch.zeros(1, 32, 1, 1)
    torch.save(wrong, tmp_path / "wrong_lin.pth")
    with pytest.raises(ModelError, match=r"lin0.model.1.weight has shape \[1, 32, 1, 1\]"):
        load_lpips_vgg(vgg_path, tmp_path / "wrong_lin.pth")
    with pytest.raises(ModelError, match="LPIPS v0.1 VGG linear-head"):
        load_lpips_vgg(vgg_path, vgg_path)  # the files swapped
    (tmp_path / "trunc.pth").write_bytes(lin_path.read_bytes()[:100])
    with pytest.raises(ModelError, match="truncated"):
        load_lpips_vgg(vgg_path, tmp_path / "trunc.pth")
    with pytest.raises(ModelError, match="not found"):
        load_lpips_vgg(tmp_path / "nope.pth", lin_path)


def test_projection_with_lpips(weight_files, G_display, display_stats):
    vgg_path, lin_path, _, _ = weight_files
    model = load_lpips_vgg(vgg_path, lin_path)
    _, target = render_targets(G_display, 2)
    r = project(G_display, target, loss="mse+lpips", perceptual=model, num_steps=2, w_stats_cache=display_stats)
    assert r.lpips is not None and r.lpips.shape == (2,) and torch.isfinite(r.lpips).all()
    assert r.params["perceptual"]["kind"] == "lpips-vgg-v0.1"
    rm = project(G_display, target, loss="mse", perceptual=model, num_steps=1, w_stats_cache=display_stats)
    assert rm.lpips is not None  # reported whenever a model is given
    rn = project(G_display, target, loss="mse", num_steps=1, w_stats_cache=display_stats)
    assert rn.lpips is None
    with pytest.raises(ConfigError, match="LPIPS weights"):
        project(G_display, target, loss="lpips", num_steps=1, w_stats_cache=display_stats)
