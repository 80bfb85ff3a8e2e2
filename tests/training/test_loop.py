"""Tiny runs from NVIDIA's fixture pickle on real aligned faces at 32 px: finite losses, the EMA
rule, snapshots that load, exact resume, stopping on NaN, FreezeD."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from facefeat.models.checkpoints import load_discriminator, load_generator
from facefeat.training import snapshots as snap
from facefeat.training.config import TrainingConfig
from facefeat.training.data import TrainingImages
from facefeat.training.ema import ema_beta
from facefeat.training.loop import NonFiniteError, Trainer, discriminator_layers, init_networks


def _images(faces32: np.ndarray, n: int = 16) -> TrainingImages:
    return TrainingImages(resolution=32, arrays=faces32[:n], source={"kind": "test", "path": "tests/data/ffhq_align"})


def _config(**kw) -> TrainingConfig:
    base = dict(kimg=1.0, batch_size=4, augment="ada", augment_p=0.25, ada_kimg=0.2, mirror=True, metrics=(),
                ema_kimg=0.02, ema_rampup=None, seed=3)
    base.update(kw)
    return TrainingConfig(**base)


_INIT_CACHE: dict = {}


def _trainer(path, faces32, **kw) -> Trainer:
    # reading the pickle once per session; every trainer gets its own copies
    if path not in _INIT_CACHE:
        _INIT_CACHE[path] = init_networks(path)
    G, D, G_ema, info = copy.deepcopy(_INIT_CACHE[path])
    return Trainer(G, D, G_ema, _images(faces32), _config(**kw), init_info=info)


def _assert_same_state(a: Trainer, b: Trainer) -> None:
    for name in ("G", "G_ema", "D"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{name}.{k}"
    for key in a.optimizers:
        oa, ob = a.optimizers[key].state_dict()["state"], b.optimizers[key].state_dict()["state"]
        assert oa.keys() == ob.keys()
        for i in oa:
            for k in oa[i]:
                assert torch.equal(oa[i][k], ob[i][k]), f"opt {key} {i} {k}"
    assert a.augment_pipe.probability == b.augment_pipe.probability
    assert torch.equal(a.loss.pl_mean, b.loss.pl_mean)
    assert (a.step_count, a.nimg) == (b.step_count, b.nimg)


def _run_and_resume(nvidia_tiny, faces32, tmp_path, first: int, second: int, **kw) -> None:
    straight = _trainer(nvidia_tiny, faces32, **kw)
    stats_straight = [straight.step() for _ in range(first + second)]

    part = _trainer(nvidia_tiny, faces32, **kw)
    stats_part = [part.step() for _ in range(first)]
    stem = part.save_snapshot(tmp_path)
    del part
    resumed = Trainer.from_snapshot(stem, _images(faces32))
    stats_part += [resumed.step() for _ in range(second)]

    assert stats_part == stats_straight  # every loss, score, p, r_t and pl_mean, bit for bit
    _assert_same_state(straight, resumed)
    for s in stats_straight:
        assert all(math.isfinite(v) for v in s.values()), s
    assert any("loss/r1" in s for s in stats_straight[first:]), "no R1 step after the resume point"
    assert any("loss/pl" in s for s in stats_straight[first:])


def test_resume_is_exact(nvidia_tiny, faces32, tmp_path):
    # short intervals so that R1, path length and the ADA update all happen after the resume point
    _run_and_resume(nvidia_tiny, faces32, tmp_path, 4, 4, batch_size=2, r1_interval=3, pl_interval=2,
                    ada_interval=2)


@pytest.mark.slow
def test_resume_is_exact_with_published_intervals(nvidia_tiny, faces32, tmp_path):
    _run_and_resume(nvidia_tiny, faces32, tmp_path, 14, 14, freeze_d=2, style_mixing_prob=0.9)


def test_losses_finite_and_ema_follows_the_half_life(nvidia_tiny, faces32):
    t = _trainer(nvidia_tiny, faces32)
    G0 = {k: v.clone() for k, v in t.G.state_dict().items()}
    for _ in range(3):
        stats = t.step()
        assert all(math.isfinite(v) for v in stats.values())
    prev = {k: v.clone() for k, v in t.G_ema.named_parameters()}
    nimg = t.nimg
    stats = t.step()
    beta = ema_beta(4, t.config.ema_kimg, None, nimg)
    assert stats["ema_beta"] == beta == pytest.approx(0.5 ** (4 / 20))
    g = dict(t.G.named_parameters())
    moved = 0
    for name, p_ema in t.G_ema.named_parameters():
        assert torch.equal(p_ema, g[name].detach().lerp(prev[name], beta)), name
        moved += not torch.equal(p_ema, g[name])
    assert moved > 0  # G_ema lags behind G
    for (name, b_ema), b in zip(t.G_ema.named_buffers(), t.G.buffers()):
        assert torch.equal(b_ema, b), name  # buffers (w_avg, noise maps) are copied
    assert any(not torch.equal(G0[k], v) for k, v in t.G.state_dict().items())


def test_ema_ramp_up_starts_as_a_copy(nvidia_tiny, faces32):
    t = _trainer(nvidia_tiny, faces32, ema_rampup=0.05, ema_kimg=10.0)
    stats = t.step()
    assert stats["ema_beta"] == 0.0
    for (name, p_ema), p in zip(t.G_ema.named_parameters(), t.G.parameters()):
        assert torch.equal(p_ema, p), name


def test_snapshot_is_a_facefeat_checkpoint_with_the_training_config(nvidia_tiny, faces32, tmp_path):
    t = _trainer(nvidia_tiny, faces32)
    for _ in range(2):
        t.step()
    stem = t.save_snapshot(tmp_path)
    assert stem.name == "network-snapshot-000000008"
    G = load_generator(stem.with_name(stem.name + ".safetensors"))
    for k, v in t.G_ema.state_dict().items():
        assert torch.equal(G.state_dict()[k], v), k
    assert load_generator(stem, which="G").img_resolution == 32
    assert load_discriminator(stem).img_resolution == 32
    doc = json.loads(stem.with_name(stem.name + ".json").read_text())
    prov = doc["provenance"]
    assert prov["training"]["config"] == t.config.to_dict()
    assert prov["training"]["nimg"] == 8 and prov["init"]["format"] == "nvidia-pickle"
    assert "non-commercial" in prov["license"]
    assert set(doc["networks"]) == {"G_ema", "G", "D"}
    final = t.save_final(tmp_path)
    assert set(json.loads(final.with_suffix(".json").read_text())["networks"]) == {"G_ema"}
    assert load_generator(final).img_resolution == 32


def test_snapshot_loads_in_the_stylegan2_extractor(nvidia_tiny, faces32, tmp_path):
    # the extractor's documented key for the generator ('checkpoint', docs/report.md, 'facefeat plugins --schema
    # stylegan2'); the extractor is built in, so nothing here may be skipped
    from facefeat.engine import Face, FaceBatch
    from facefeat.engine.registry import load_registry

    t = _trainer(nvidia_tiny, faces32)
    t.step()
    stem = t.save_snapshot(tmp_path)
    weights = stem.with_name(stem.name + ".safetensors")
    ext = load_registry().create("stylegan2", {"checkpoint": str(weights), "steps": 2, "w_avg_samples": 64,
                                               "space": "wplus"})
    assert ext.model_files()["checkpoint"] == str(weights)
    ext.load("cpu")
    loaded = ext._G.state_dict()
    for k, v in t.G_ema.state_dict().items():  # the snapshot's G_ema, exactly (not G, not the init)
        assert torch.equal(loaded[k], v), k
    assert any(not torch.equal(loaded[k], v) for k, v in t.G.state_dict().items())
    faces = FaceBatch([Face(f"img{i}", f"s{i}", np.zeros((68, 2)), (0, 0, 1, 1), aligned={32: faces32[i]})
                       for i in range(2)])
    batch = ext.extract(faces)
    latents = np.asarray(batch.column("stylegan2__latent").to_pylist())
    assert latents.shape == (2, t.G_ema.num_ws * t.G_ema.w_dim) and np.isfinite(latents).all()
    assert batch.column("diag__stylegan2__steps").to_pylist() == [2, 2]


def test_nan_stops_the_run_and_keeps_the_last_good_snapshot(nvidia_tiny, faces32, tmp_path):
    t = _trainer(nvidia_tiny, faces32, kimg=0.016, snapshot_kimg=0.008, sample_kimg=0.008, tick_kimg=0.008)
    t.train(tmp_path, progress=False)
    good = snap.latest_snapshot(tmp_path)
    assert good is not None and good.name.endswith("000000016")
    t.config = t.config.replace(kimg=0.032)
    with torch.no_grad():
        t.G.synthesis.b4.conv1.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="network-snapshot-000000016"):
        t.train(tmp_path, progress=False)
    assert snap.latest_snapshot(tmp_path) == good
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "stopped" and last["last_good_snapshot"] == str(good)
    G = load_generator(good)
    assert all(torch.isfinite(p).all() for p in G.parameters())


def test_sanitize_policy_zeroes_non_finite_gradients(nvidia_tiny, faces32):
    t = _trainer(nvidia_tiny, faces32, nan_policy="sanitize", augment="none")
    real = t._real_batch

    def poisoned():
        x = real()
        x[0, 0, 0, 0] = float("nan")
        return x

    t._real_batch = poisoned
    t.step()
    assert t.n_sanitized >= 1
    assert all(torch.isfinite(p).all() for p in t.D.parameters())


def test_freezed_keeps_the_first_discriminator_layers(nvidia_tiny, faces32):
    t = _trainer(nvidia_tiny, faces32, freeze_d=3, augment="none")
    layers = discriminator_layers(t.D)
    assert [n for n, _ in layers[:3]] == t.frozen_d_layers == ["b32.fromrgb", "b32.conv0", "b32.conv1"]
    before = {n: [p.clone() for p in m.parameters()] for n, m in layers}
    t.step()
    for i, (name, module) in enumerate(layers):
        same = all(torch.equal(a, b) for a, b in zip(before[name], module.parameters()))
        assert same == (i < 3), name


def test_batch_must_fit_the_minibatch_stddev_group(nvidia_tiny, faces32):
    from facefeat.errors import ConfigError

    G, D, G_ema, _ = init_networks(nvidia_tiny)
    with pytest.raises(ConfigError, match="minibatch-stddev"):
        Trainer(G, D, G_ema, _images(faces32), _config(batch_size=6))


def test_init_from_scratch_and_from_a_file_without_discriminator(tmp_path, nvidia_tiny):
    from facefeat.models.checkpoints import convert_checkpoint

    G, D, G_ema, info = init_networks("scratch", resolution=16, cfg="auto")
    assert G.img_resolution == D.img_resolution == 16 and info["init"] == "scratch"
    G2, _, _, _ = init_networks("scratch", resolution=16, cfg="auto")
    assert all(torch.equal(a, b) for a, b in zip(G.parameters(), G2.parameters()))  # seeded
    w, _ = convert_checkpoint(nvidia_tiny, tmp_path / "g_only", networks=["G_ema"])
    G, D, G_ema, info = init_networks(w)
    assert info["networks"] == {"G": "G_ema", "G_ema": "G_ema", "D": "random"}
    assert any("no discriminator" in n for n in info["notes"])
    assert all(torch.equal(a, b) for a, b in zip(G.parameters(), G_ema.parameters()))


def test_a_failing_metric_is_logged_and_the_run_goes_on(nvidia_tiny, faces32, tmp_path):
    t = _trainer(nvidia_tiny, faces32, kimg=0.008, metrics=("kid",))

    def broken():
        raise RuntimeError("feature network exploded")

    t.evaluate = broken
    result = t.train(tmp_path, progress=False)
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(e["event"] == "metrics_failed" and "exploded" in e["error"] for e in events)
    assert events[-1]["event"] == "done" and result.final.is_file()
