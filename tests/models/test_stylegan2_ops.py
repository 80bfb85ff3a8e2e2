"""StyleGAN2 building blocks: fast paths equal the reference forms, API contracts, gradients,
compute dtypes and torch.compile tracing."""

from __future__ import annotations

import pytest
import torch

from facefeat.models.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from facefeat.models.stylegan2.ops import (
    fir_filter,
    make_filter,
    minibatch_stddev,
    modulated_conv2d,
    upfirdn2d,
    upsample2d,
)

# An asymmetric filter catches flipped kernels that the symmetric [1,3,3,1] would hide.
ASYM = make_filter([1.0, 2.0, 3.0, 4.0])


def _small_config(**kw) -> GeneratorConfig:
    base = dict(z_dim=16, w_dim=16, img_resolution=16, channels={4: 24, 8: 16, 16: 8}, mapping_layers=2)
    base.update(kw)
    return GeneratorConfig(**base)


def _randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial values everywhere (zero biases/noise strengths would hide mistakes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("noise_strength") or name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if "affine" in name else 0.0))
    return module


@pytest.mark.parametrize("f", [make_filter([1, 3, 3, 1]), ASYM], ids=["sym", "asym"])
def test_upsample2d_fast_equals_upfirdn2d(f):
    x = torch.randn(2, 3, 7, 5)
    assert torch.allclose(upsample2d(x, f), upfirdn2d(x, f, up=2, pad=(2, 1), gain=4.0), atol=1e-6)


@pytest.mark.parametrize("pad,down", [((1, 1), 1), ((2, 2), 1), ((1, 1), 2), ((2, 1), 1), ((2, 2), 2)])
def test_fir_filter_equals_upfirdn2d(pad, down):
    x = torch.randn(2, 3, 9, 8)
    assert torch.allclose(fir_filter(x, ASYM, pad=pad, down=down), upfirdn2d(x, ASYM, pad=pad, down=down),
                          atol=1e-6)


def test_upfirdn2d_negative_padding_crops():
    x = torch.randn(1, 1, 6, 6)
    out = upfirdn2d(x, make_filter([1.0]), pad=(-1, -2))
    assert torch.equal(out, x[:, :, 1:4, 1:4])


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_fast_equals_reference(batch, up, demodulate):
    g = torch.Generator().manual_seed(batch * 10 + up)
    x = torch.randn(batch, 6, 5, 5, generator=g)
    w = torch.randn(4, 6, 3, 3, generator=g)
    s = torch.randn(batch, 6, generator=g) + 1
    n = torch.randn(batch, 1, 5 * up, 5 * up, generator=g)
    kw = dict(demodulate=demodulate, up=up, resample_filter=ASYM, noise=n)
    ref = modulated_conv2d(x, w, s, impl="reference", **kw)
    fast = modulated_conv2d(x, w, s, impl="fast", **kw)
    assert ref.shape == (batch, 4, 5 * up, 5 * up)
    assert torch.allclose(fast, ref, atol=1e-5, rtol=1e-5)


def test_minibatch_stddev_groups_are_strided():
    x = torch.randn(8, 2, 3, 3)
    out = minibatch_stddev(x, 4)
    for members in ([0, 2, 4, 6], [1, 3, 5, 7]):
        expect = (x[members].var(0, unbiased=False) + 1e-8).sqrt().mean()
        for i in members:
            assert torch.allclose(out[i, 2], expect.expand(3, 3), atol=1e-6)
    with pytest.raises(ValueError, match="not divisible"):
        minibatch_stddev(torch.randn(6, 2, 3, 3), 4)


@pytest.mark.parametrize("batch", [1, 2])
def test_generator_fast_equals_reference(batch):
    cfg = _small_config(resample_filter=(1.0, 2.0, 3.0, 4.0), conv_clamp=1.5)
    G = _randomize(Generator(cfg)).eval()
    z = torch.randn(batch, cfg.z_dim)
    with torch.no_grad():
        ws = G.mapping(z)
        for mode in ("const", "none"):
            a = G.synthesis(ws, noise_mode=mode, impl="fast")
            b = G.synthesis(ws, noise_mode=mode, impl="reference")
            assert a.shape == (batch, 3, 16, 16) and a.is_contiguous()
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), mode


@pytest.mark.parametrize("batch", [1, 2])
def test_gradients_match_reference(batch):
    """Inversion needs d img / d ws: the fast path must not break autograd with in-place ops."""
    G = _randomize(Generator(_small_config())).eval().requires_grad_(False)
    ws0 = G.mapping(torch.randn(batch, 16)).detach()
    grads = []
    for impl in ("fast", "reference"):
        ws = ws0.clone().requires_grad_(True)
        G.synthesis(ws, noise_mode="const", impl=impl).square().mean().backward()
        grads.append(ws.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_noise_modes_and_explicit_noise():
    G = _randomize(Generator(_small_config())).eval()
    ws = G.mapping(torch.randn(2, 16))
    with torch.no_grad():
        const = G.synthesis(ws, noise_mode="const")
        none = G.synthesis(ws, noise_mode="none")
        zeros = [torch.zeros(r) for r in G.synthesis.noise_shapes()]
        stored = [torch.stack([m]) for m in (l.noise_const for l in _layers(G))]
        assert torch.allclose(G.synthesis(ws, noise=zeros), none, atol=1e-6)
        assert torch.allclose(G.synthesis(ws, noise=stored), const, atol=1e-6)
        assert (const - none).abs().max() > 1e-3
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="fixed")
    with pytest.raises(ValueError, match="noise must hold 5"):
        G.synthesis(ws, noise=zeros[:2])


def _layers(G):
    out = [G.synthesis.b4.conv1]
    for r in G.synthesis.block_resolutions[1:]:
        b = getattr(G.synthesis, f"b{r}")
        out += [b.conv0, b.conv1]
    return out


def test_api_contract():
    G = Generator(_small_config())
    assert (G.z_dim, G.w_dim, G.num_ws, G.img_resolution) == (16, 16, 6, 16)
    assert G.w_avg.shape == (16,) and "mapping.w_avg" in G.state_dict()
    with pytest.raises(ValueError, match=r"z must be \[batch, 16\]"):
        G.mapping(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"ws must be \[batch, 6, 16\]"):
        G.synthesis(torch.randn(2, 5, 16))
    m = G.mean_w(500, seed=1)
    assert torch.equal(m, G.mean_w(500, seed=1)) and not torch.equal(m, G.mean_w(500, seed=2))
    ws = G.mapping(torch.randn(3, 16), truncation_psi=0.5, truncation_cutoff=2)
    assert ws.shape == (3, 6, 16)
    assert torch.equal(ws[:, 2], ws[:, 5])  # untruncated rows share one w
    D = Discriminator(DiscriminatorConfig(img_resolution=16, channels={4: 8, 8: 8, 16: 4}))
    assert D(torch.randn(4, 3, 16, 16)).shape == (4, 1)
    with pytest.raises(ValueError, match="img must be"):
        D(torch.randn(4, 3, 8, 8))


def test_meta_device_build_has_no_storage():
    G = Generator(GeneratorConfig.nvidia(1024), device="meta")
    assert all(p.is_meta for p in G.parameters())
    assert sum(p.numel() for p in G.parameters()) == 30_370_060


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_compute(dtype):
    G = _randomize(Generator(_small_config())).eval()
    ws = G.mapping(torch.randn(2, 16))
    with torch.no_grad():
        ref = G.synthesis(ws)
        try:
            out = G.synthesis(ws, compute_dtype=dtype)
        except RuntimeError as exc:  # some CPU builds lack half convolutions
            pytest.skip(f"{dtype} convolution unavailable on this CPU build: {exc}")
    assert out.dtype == torch.float32
    rel = (out - ref).abs().max() / ref.abs().max()
    assert rel < 0.05, float(rel)


def test_compile_traces_without_graph_breaks():
    G = _randomize(Generator(_small_config())).eval()
    z = torch.randn(2, 16)
    for mode in ("const", "none"):
        f = torch.compile(lambda z: G(z, truncation_psi=0.7, noise_mode=mode), backend="eager", fullgraph=True)
        with torch.no_grad():
            assert torch.allclose(f(z), G(z, truncation_psi=0.7, noise_mode=mode), atol=1e-6)
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit deprecations inside inductor
def test_inductor_compile_matches_eager():
    G = _randomize(Generator(_small_config())).eval()
    z = torch.randn(2, 16)
    f = torch.compile(G)
    with torch.no_grad():
        assert torch.allclose(f(z), G(z), atol=1e-4)
    torch._dynamo.reset()


@pytest.mark.parametrize("cl_min_res", [None, 4, 8])
@pytest.mark.parametrize("max_batch_elements", [None, 1, 3000])
def test_memory_formats_and_batch_chunking_do_not_change_results(cl_min_res, max_batch_elements):
    G = _randomize(Generator(_small_config())).eval()
    ws = G.mapping(torch.randn(3, 16))
    noise = [torch.randn(3, 1, r, r) for r, _ in G.synthesis.noise_shapes()]
    with torch.no_grad():
        ref = G.synthesis(ws, impl="reference", noise=noise)
        G.synthesis.channels_last_min_res = cl_min_res
        G.synthesis.max_batch_elements = max_batch_elements
        out = G.synthesis(ws, noise=noise)
        const = G.synthesis(ws, noise_mode="const")
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)
    assert torch.allclose(const, G.synthesis(ws, noise_mode="const", impl="reference"), atol=1e-5, rtol=1e-5)


def test_weight_cache_follows_weight_updates():
    """The fast path caches weight-derived tensors; in-place updates and new tensors invalidate them."""
    G = _randomize(Generator(_small_config())).eval().requires_grad_(False)
    ws = G.mapping(torch.randn(2, 16))
    with torch.no_grad():
        before = G.synthesis(ws)
        G.synthesis.b8.conv1.weight.mul_(1.5).add_(0.1)
        G.synthesis.b16.torgb.weight.mul_(-1.0)
        after = G.synthesis(ws)
        assert not torch.allclose(before, after)
        assert torch.allclose(after, G.synthesis(ws, impl="reference"), atol=1e-5, rtol=1e-5)
        G.load_state_dict({k: v.clone() * 0.9 for k, v in G.state_dict().items()})
        assert torch.allclose(G.synthesis(ws), G.synthesis(ws, impl="reference"), atol=1e-5, rtol=1e-5)


def test_networks_built_in_inference_mode():
    with torch.inference_mode():
        G = _randomize(Generator(_small_config())).eval()
        ws = G.mapping(torch.randn(2, 16))
        assert torch.allclose(G.synthesis(ws), G.synthesis(ws, impl="reference"), atol=1e-5, rtol=1e-5)
