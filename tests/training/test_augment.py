"""ADA: identity at p = 0, differentiable (twice, for R1), each augmentation acts, p adapts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from facefeat.training.augment import COLOR, GEOMETRIC, AdaController, AugmentPipe
from facefeat.training.loss import StyleGAN2Loss
from tests.training.conftest import tiny_generator


def _smooth(b: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    x = torch.rand(b, 3, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)


def test_p_zero_returns_the_batch_unchanged():
    x = _smooth()
    pipe = AugmentPipe(p=0.0)
    out = pipe(x, generator=torch.Generator().manual_seed(0))
    assert out is x
    # and images that draw nothing at p > 0 are untouched too
    out = AugmentPipe(p=0.05)(x, generator=torch.Generator().manual_seed(1))
    same = [torch.equal(out[i], x[i]) for i in range(len(x))]
    assert any(same)


@pytest.mark.parametrize("name", GEOMETRIC + COLOR)
def test_each_augmentation_changes_images_at_p_one(name):
    x = _smooth(b=8)
    out = AugmentPipe(p=1.0, strengths={name: 1.0})(x, generator=torch.Generator().manual_seed(2))
    assert out.shape == x.shape and torch.isfinite(out).all()
    changed = [not torch.allclose(out[i], x[i], atol=1e-4) for i in range(len(x))]
    assert sum(changed) >= 2, name


def test_geometric_ops_land_on_the_expected_pixels():
    x = _smooth(b=8, seed=3)
    gen = torch.Generator().manual_seed(4)
    out = AugmentPipe(p=1.0, strengths={"xflip": 1.0})(x, generator=gen)
    for i in range(len(x)):
        err_same = (out[i] - x[i]).abs().max().item()
        err_flip = (out[i] - x[i].flip(-1)).abs().max().item()
        assert min(err_same, err_flip) < 0.1  # the sym6 low-pass is not symmetric: flips are near-exact
    out = AugmentPipe(p=1.0, strengths={"rotate90": 1.0})(x, generator=torch.Generator().manual_seed(5))
    for i in range(len(x)):
        errs = [(out[i] - torch.rot90(x[i], k, (1, 2))).abs().max().item() for k in range(4)]
        assert min(errs) < 0.1


def test_brightness_adds_a_constant_per_image():
    x = _smooth()
    out = AugmentPipe(p=1.0, strengths={"brightness": 1.0})(x, generator=torch.Generator().manual_seed(6))
    shift = (out - x).flatten(1)
    torch.testing.assert_close(shift, shift[:, :1].expand_as(shift), atol=1e-5, rtol=0)


def _check_pipe(order: int) -> None:
    pipe = AugmentPipe(p=1.0)  # every augmentation drawn: geometric and color stages both run
    x = (torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(7)) * 2 - 1).double().requires_grad_(True)

    def f(inp):
        return pipe(inp, generator=torch.Generator().manual_seed(8))

    assert not torch.allclose(f(x), x)
    check = torch.autograd.gradcheck if order == 1 else torch.autograd.gradgradcheck
    assert check(f, (x,), eps=1e-6, atol=1e-5)


def test_augmentations_are_differentiable():
    _check_pipe(1)


def test_augmentations_are_twice_differentiable():
    # R1 through the pipeline differentiates its backward pass again.
    _check_pipe(2)


def test_same_generator_state_gives_the_same_augmentation():
    x = _smooth()
    a = AugmentPipe(p=0.5)(x, generator=torch.Generator().manual_seed(9))
    b = AugmentPipe(p=0.5)(x, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def test_ada_controller_steps_toward_the_target():
    pipe = AugmentPipe(p=0.5)
    ada = AdaController(pipe, target=0.6, batch_size=8, interval=4, ada_kimg=1.0)
    assert ada.step_size == pytest.approx(8 * 4 / 1000)
    ada.accumulate(torch.ones(8, 1))
    assert ada.update() == pytest.approx(0.5 + 0.032)
    assert ada.r_t == 1.0
    ada.accumulate(-torch.ones(8, 1))
    ada.accumulate(torch.ones(8, 1))  # r_t = 0 < 0.6
    assert ada.update() == pytest.approx(0.5)
    assert ada.update() == pytest.approx(0.5)  # nothing accumulated: no change
    pipe.p.fill_(0.01)
    ada.accumulate(-torch.ones(4, 1))
    assert ada.update() == 0.0  # clamped at 0
    pipe.p.fill_(0.99)
    ada.accumulate(torch.ones(4, 1))
    assert ada.update() == 1.0  # clamped at 1


class _ConstantD(torch.nn.Module):
    """A discriminator whose score is ``sign * (1 + 0 * w)``: real or fake, always the same."""

    def __init__(self, sign: float) -> None:
        super().__init__()
        self.sign = sign
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, img):
        return (img.mean(dim=[1, 2, 3], keepdim=False)[:, None] * 0 + 1 + self.w) * self.sign


@pytest.mark.parametrize("sign,direction", [(1.0, 1), (-1.0, -1)])
def test_p_rises_when_d_calls_every_real_real_and_falls_otherwise(sign, direction):
    G = tiny_generator()
    pipe = AugmentPipe(p=0.2)
    ada = AdaController(pipe, target=0.6, batch_size=4, interval=4, ada_kimg=1.0)
    D = _ConstantD(sign).requires_grad_(True)
    loss = StyleGAN2Loss(G, D, augment_pipe=pipe, ada=ada, noise_mode="const",
                         generator=torch.Generator().manual_seed(0))
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    p = [pipe.probability]
    for _ in range(3):
        for _ in range(4):
            loss.accumulate_gradients("Dmain", real, torch.randn(4, 16))
        p.append(ada.update())
    steps = [b - a for a, b in zip(p, p[1:])]
    assert all(math.copysign(1, s) == direction and abs(s) == pytest.approx(0.016) for s in steps)
