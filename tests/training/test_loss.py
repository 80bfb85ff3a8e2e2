"""R1 and path-length penalties against independent autograd computations; lazy regularisation."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from facefeat.training.config import TrainingConfig
from facefeat.training.data import TrainingImages
from facefeat.training.loop import Trainer
from facefeat.training.loss import StyleGAN2Loss
from tests.training.conftest import tiny_discriminator, tiny_generator


def _grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}


def _r1_independent(D: torch.nn.Module, real: torch.Tensor, gamma: float, gain: float) -> torch.Tensor:
    """The R1 loss written out from the definition, on its own copy of D."""
    x = real.detach().clone().requires_grad_(True)
    scores = D(x)
    (g,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return (g.square().sum(dim=[1, 2, 3]) * (gamma / 2)).mean() * gain


def test_r1_equals_double_backward_and_is_scaled_by_the_interval():
    D = tiny_discriminator()
    G = tiny_generator()
    real = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    z = torch.randn(4, 16)
    gamma, interval = 3.0, 16
    loss = StyleGAN2Loss(G, D, r1_gamma=gamma)

    D_ref = copy.deepcopy(D).double().requires_grad_(True)
    ref = _r1_independent(D_ref, real.double(), gamma, interval)
    ref.backward()
    expected = _grads(D_ref)

    D.requires_grad_(True)
    stats = loss.accumulate_gradients("Dreg", real, z, gain=interval)
    got = _grads(D)
    # (the loop's ``logits * 0`` term gives the output bias an explicit zero gradient)
    assert set(expected) <= set(got) and all(float(got[k].abs().max()) == 0 for k in set(got) - set(expected))
    for name in expected:
        torch.testing.assert_close(got[name].double(), expected[name], rtol=2e-3, atol=1e-6, msg=name)
    assert stats["loss"] * interval == pytest.approx(ref.item(), rel=1e-4)
    assert stats["loss/r1"] == pytest.approx(ref.item() / interval, rel=1e-4)

    # the interval multiplies the gradient exactly
    D.zero_grad(set_to_none=True)
    loss.accumulate_gradients("Dreg", real, z, gain=1.0)
    for name, g in _grads(D).items():
        torch.testing.assert_close(g * interval, got[name], rtol=1e-5, atol=1e-7)


def test_r1_double_backward_matches_finite_differences():
    """The double-backward gradient of the R1 penalty w.r.t. D's weights, against central
    differences of the penalty itself (float64), for a few weights in different layers."""
    D = tiny_discriminator().double()
    real = (torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1).double()
    D.requires_grad_(True)
    _r1_independent(D, real, 1.0, 1.0).backward()
    params = dict(D.named_parameters())
    picks = [("b16.fromrgb.weight", (1, 2, 0, 0)), ("b16.conv0.weight", (3, 1, 1, 2)),
             ("b8.conv1.weight", (0, 5, 2, 1)), ("b4.fc.weight", (2, 7))]
    for name, idx in picks:
        p = params[name]
        h = 1e-4
        with torch.no_grad():
            p[idx] += h
        up = _r1_independent(D, real, 1.0, 1.0).item()
        with torch.no_grad():
            p[idx] -= 2 * h
        down = _r1_independent(D, real, 1.0, 1.0).item()
        with torch.no_grad():
            p[idx] += h
        fd = (up - down) / (2 * h)
        assert p.grad[idx].item() == pytest.approx(fd, rel=2e-3, abs=1e-8), name


def test_path_length_penalty_equals_independent_computation():
    G = tiny_generator()
    D = tiny_discriminator()
    seed, weight, decay, gain, shrink = 11, 2.0, 0.01, 4, 2
    loss = StyleGAN2Loss(G, D, style_mixing_prob=0.0, pl_weight=weight, pl_decay=decay, pl_batch_shrink=shrink,
                         noise_mode="const", generator=torch.Generator().manual_seed(seed))
    loss.pl_mean.fill_(0.3)  # a running mean from "earlier steps": the decay must be applied
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(2))
    real = torch.zeros(4, 3, 16, 16)

    G_ref = copy.deepcopy(G).requires_grad_(True)
    n = 4 // shrink
    ws = G_ref.mapping(z[:n])
    img = G_ref.synthesis(ws, noise_mode="const")
    y = torch.randn(img.shape, generator=torch.Generator().manual_seed(seed)) / math.sqrt(16 * 16)
    (g,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
    lengths = g.square().sum(2).mean(1).sqrt()
    mean = 0.3 + decay * (lengths.mean().detach() - 0.3)
    ref = ((lengths - mean).square() * weight).mean()
    (ref * gain).backward()
    expected = _grads(G_ref)

    G.requires_grad_(True)
    stats = loss.accumulate_gradients("Greg", real, z, gain=gain)
    got = _grads(G)
    assert stats["pl_mean"] == pytest.approx(float(mean), rel=1e-5)
    assert float(loss.pl_mean) == pytest.approx(float(mean), rel=1e-5)
    assert stats["loss/pl"] == pytest.approx(ref.item(), rel=1e-4)
    assert set(expected) <= set(got) and all(float(got[k].abs().max()) == 0 for k in set(got) - set(expected))
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_lazy_regularisation_corrects_lr_and_betas_and_sets_intervals():
    G, D = tiny_generator(), tiny_discriminator()
    images = TrainingImages(resolution=16, arrays=torch.zeros(4, 16, 16, 3, dtype=torch.uint8).numpy())
    cfg = TrainingConfig(batch_size=4, g_lr=0.002, d_lr=0.003, metrics=(), augment="none")
    t = Trainer(G, D, copy.deepcopy(G), images, cfg)
    assert [(p.name, p.interval) for p in t.phases] == [("Gmain", 1), ("Greg", 4), ("Dmain", 1), ("Dreg", 16)]
    g, d = t.optimizers["G"].param_groups[0], t.optimizers["D"].param_groups[0]
    assert g["lr"] == pytest.approx(0.002 * 4 / 5) and d["lr"] == pytest.approx(0.003 * 16 / 17)
    assert g["betas"] == pytest.approx((0.0, 0.99 ** (4 / 5))) and d["betas"] == pytest.approx((0.0, 0.99 ** (16 / 17)))
    # a regulariser switched off drops its phase and its correction
    t = Trainer(tiny_generator(), tiny_discriminator(), tiny_generator(), images,
                cfg.replace(r1_gamma=0.0, pl_weight=0.0))
    assert [p.name for p in t.phases] == ["Gmain", "Dmain"]
    assert t.optimizers["D"].param_groups[0]["lr"] == pytest.approx(0.003)
    assert t.optimizers["D"].param_groups[0]["betas"] == pytest.approx((0.0, 0.99))


def test_auto_config_follows_stylegan2_ada():
    cfg = TrainingConfig().resolved(256)
    assert cfg.batch_size == 16 and cfg.g_lr == cfg.d_lr == 0.0025
    assert cfg.r1_gamma == pytest.approx(0.0002 * 256 ** 2 / 16)
    assert cfg.ema_kimg == pytest.approx(16 * 10 / 32)
    assert TrainingConfig().resolved(1024).g_lr == 0.002


def test_style_mixing_uses_two_latents_at_the_drawn_row():
    G, D = tiny_generator(), tiny_discriminator()
    loss = StyleGAN2Loss(G, D, style_mixing_prob=1.0, noise_mode="const", w_avg_beta=None,
                         generator=torch.Generator().manual_seed(0), cpu_generator=torch.Generator().manual_seed(4))
    z = torch.randn(2, 16)
    with torch.no_grad():
        _, ws = loss.run_G(z)
    cutoff = int(torch.randint(1, G.num_ws, (), generator=torch.Generator().manual_seed(4)))
    w1 = G.mapping(z)
    torch.testing.assert_close(ws[:, :cutoff], w1[:, :cutoff])
    assert not torch.allclose(ws[:, cutoff:], w1[:, cutoff:])


def test_w_avg_tracks_the_mapping_output():
    G, D = tiny_generator(), tiny_discriminator()
    loss = StyleGAN2Loss(G, D, style_mixing_prob=0.0, noise_mode="const", w_avg_beta=0.9)
    z = torch.randn(8, 16)
    before = G.mapping.w_avg.clone()
    with torch.no_grad():
        loss.run_G(z)
        expected = G.mapping.embed(z).mean(0).lerp(before, 0.9)
    torch.testing.assert_close(G.mapping.w_avg, expected)
