"""Encoder training (``facefeat.training.encoder``, ``facefeat train encoder``): exact resume,
the official e4e layout on export, bad-input errors, and a measured CPU run on a small generator."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from facefeat.errors import ConfigError, InputError, ModelError
from facefeat.training.data import TrainingImages
from facefeat.training.encoder import (
    EncoderTrainingConfig,
    latent_correlation,
    toy_generator,
    train_encoder,
)
from tests.conftest import DATA

ROS_CONVERTED = DATA / "stylegan2" / "rosinality_tiny_converted_ckpt.pt"


@pytest.fixture(scope="module")
def G():
    return toy_generator()


@pytest.fixture(scope="module")
def g_file(G, tmp_path_factory):
    from facefeat.models.checkpoints import save_checkpoint

    path = tmp_path_factory.mktemp("gen") / "toy32"
    save_checkpoint(path, {"G_ema": G})
    return path.with_suffix(".safetensors")


def _small(**kw) -> EncoderTrainingConfig:
    base = dict(steps=4, batch_size=2, synthetic=40, n_eval=4, eval_every=2, sample_every=2, save_every=0,
                holdout=2, grid_size=4, keep_snapshots=0, seed=5, mirror=True)
    base.update(kw)
    return EncoderTrainingConfig(**base)


def _records(out, event):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["event"] == event]


def _strip_times(recs):
    return [{k: v for k, v in r.items() if k not in ("sec", "time")} for r in recs]


# -- fast ------------------------------------------------------------------------------------------

def test_config_validation():
    with pytest.raises(ConfigError, match="batch_size"):
        EncoderTrainingConfig(batch_size=0)
    with pytest.raises(ConfigError, match="mixing_prob"):
        EncoderTrainingConfig(mixing_prob=1.5)
    with pytest.raises(ConfigError, match="input_size"):
        EncoderTrainingConfig(input_size=48)
    with pytest.raises(ConfigError, match="noise_mode"):
        EncoderTrainingConfig(noise_mode="random")
    cfg = EncoderTrainingConfig(synthetic=10, betas=(0.5, 0.9))
    assert EncoderTrainingConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_latent_correlation_figures():
    gen = torch.Generator().manual_seed(0)
    true = torch.randn(50, 3, 512, generator=gen) + 2.0
    perfect = latent_correlation(true, true)
    assert perfect["latent_r"] == pytest.approx(1.0) and perfect["latent_r_pooled"] == pytest.approx(1.0)
    assert perfect["latent_mse"] == 0.0
    noise = latent_correlation(torch.randn(50, 3, 512, generator=gen), true)
    assert abs(noise["latent_r"]) < 0.05 and abs(noise["latent_r_pooled"]) < 0.05
    # the mean alone (the w_avg "prediction") carries no per-sample information
    mean = latent_correlation(true.mean(0, keepdim=True).expand_as(true), true)
    assert mean["latent_r"] == 0.0 and mean["latent_mse"] == pytest.approx(mean["latent_mse_w_avg"])


def test_exported_decoder_reproduces_the_official_file():
    """The decoder.* the trainer exports (facefeat.models.e4e.rosinality_decoder_state_dict) is the
    inverse of the rosinality loader: the fixture's official g_ema comes back bit for bit."""
    from facefeat.models.checkpoints import load_generator
    from facefeat.models.e4e import rosinality_decoder_state_dict

    original = torch.load(ROS_CONVERTED, map_location="cpu", weights_only=True)["g_ema"]
    sd = rosinality_decoder_state_dict(load_generator(ROS_CONVERTED))
    assert set(sd) == set(original)
    for k, v in original.items():
        assert sd[k].shape == v.shape, k
        assert torch.equal(sd[k], v.float()), k


def test_bad_generator_inputs(tmp_path, G):
    cfg = _small()
    with pytest.raises(ModelError, match="--generator .*missing.pt"):
        train_encoder(tmp_path / "missing.pt", out=tmp_path / "o", config=cfg)
    # the repository's tiny fixture generators have w_dim 64: e4e codes are 512-D
    with pytest.raises(ModelError, match="w_dim is 64.*toy_generator"):
        train_encoder(ROS_CONVERTED, out=tmp_path / "o", config=cfg)
    with pytest.raises(ConfigError, match="--images DIR .*--synthetic N"):
        train_encoder(G, out=tmp_path / "o", config=_small(synthetic=0))
    with pytest.raises(ConfigError, match="no encoder snapshot"):
        train_encoder(G, out=tmp_path / "o", config=cfg, resume=True)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "encoder-snapshot-0000002.pt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="pass --resume"):
        train_encoder(G, out=tmp_path / "run", config=cfg)


def test_bad_image_folders(tmp_path, G):
    import PIL.Image

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no images found"):
        train_encoder(G, out=tmp_path / "o", images=empty, config=_small())
    raw = tmp_path / "raw"
    raw.mkdir()
    PIL.Image.new("RGB", (48, 32)).save(raw / "photo.png")
    with pytest.raises(InputError, match="not square.*align"):
        train_encoder(G, out=tmp_path / "o", images=raw, config=_small())


def test_init_from_with_the_wrong_style_count(tmp_path, G):
    """An e4e checkpoint for a 64 px generator (10 styles) cannot start an 8-style encoder."""
    from facefeat.models.e4e import Encoder4Editing, save_e4e_checkpoint

    with torch.device("meta"):
        enc = Encoder4Editing(64, input_size=32)
    path = save_e4e_checkpoint(tmp_path / "e4e64.pt", enc, latent_avg=None)
    with pytest.raises(ModelError, match=r"--init-from: .*e4e64.pt produces 10 W\+ rows.*num_ws=8"):
        train_encoder(G, out=tmp_path / "o", config=_small(), init_from=path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="--init-from .*junk.pt"):
        train_encoder(G, out=tmp_path / "o", config=_small(), init_from=tmp_path / "junk.pt")


def test_cli_help_and_argument_errors(capsys, tmp_path):
    from facefeat.cli import main

    with pytest.raises(SystemExit):
        main(["train", "encoder", "--help"])
    out = capsys.readouterr().out
    assert "--synthetic" in out and "--init-from" in out and "Examples:" in out and "--resume" in out
    assert main(["train", "encoder", "--out", str(tmp_path / "o")]) == 2
    assert "needs --generator" in capsys.readouterr().err
    assert main(["train", "encoder", "--generator", "g.pkl", "--out", str(tmp_path / "o")]) == 2
    assert "--synthetic N" in capsys.readouterr().err


# -- slow: runs that train -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(G, faces32, tmp_path_factory):
    """One 4-step run, and the same run as 2 steps + a resume to 4 (mixed real + synthetic data)."""
    images = TrainingImages(resolution=32, arrays=faces32[:8], source={"kind": "test"})
    root = tmp_path_factory.mktemp("enc")
    straight = train_encoder(G, out=root / "a", images=images, config=_small(), progress=False)
    half = train_encoder(G, out=root / "b", images=images, config=_small(steps=2), progress=False)
    resumed = train_encoder(G, out=root / "b", images=images, config=_small(), resume=True, progress=False)
    return straight, half, resumed, images


@pytest.mark.slow
def test_resume_continues_exactly(runs):
    straight, half, resumed, _ = runs
    assert half.step == 2 and resumed.step == straight.step == 4
    a, b = straight.out, resumed.out
    assert _strip_times(_records(a, "step")) == _strip_times(_records(b, "step"))
    assert [r["step"] for r in _records(b, "step")] == [1, 2, 3, 4]
    assert _records(a, "eval") == _records(b, "eval")
    assert [r["event"] for r in map(json.loads, (b / "metrics.jsonl").read_text().splitlines())].count("resume") == 1
    # weights and optimiser state: bitwise on the CPU
    sa = torch.load(straight.snapshots[-1], weights_only=True)
    sb = torch.load(resumed.snapshots[-1], weights_only=True)
    assert sa["encoder"].keys() == sb["encoder"].keys()
    for k in sa["encoder"]:
        assert torch.equal(sa["encoder"][k], sb["encoder"][k]), k
    for i, st in sa["optimizer"]["state"].items():
        for k, v in st.items():
            assert torch.equal(v, sb["optimizer"]["state"][i][k]), (i, k)
    assert torch.equal(sa["rng"], sb["rng"]) and sa["real_sampler"] == sb["real_sampler"]
    assert sa["syn_sampler"] == sb["syn_sampler"]
    for name in ("samples-0000000.png", "samples-0000002.png", "samples-0000004.png", "training_options.json"):
        assert (b / name).is_file()


@pytest.mark.slow
def test_final_checkpoint_loads_with_load_e4e_and_gives_the_same_codes(runs, G):
    from facefeat.models.e4e import encode, load_e4e
    from facefeat.models.e4e.checkpoint import read_checkpoint

    straight, _, _, images = runs
    ck = load_e4e(straight.final, num_ws=G.num_ws)
    assert ck.encoder.input_size == 32 and ck.n_styles == G.num_ws == 8
    assert ck.latent_avg.shape == (8, 512) and torch.allclose(ck.latent_avg[3], straight.latent_avg)
    opts = ck.opts
    assert opts["stylegan_size"] == 32 and opts["trained_steps"] == 4 and opts["start_from_latent_avg"]
    assert "not included" in opts["decoder"] and "z_dim == w_dim" in opts["decoder"]  # z_dim 8: no rosinality
    assert json.loads(opts["facefeat_config"])["synthetic"] == 40
    crops = images.load(range(3))
    codes = encode(ck.encoder, crops, latent_avg=ck.latent_avg)
    with torch.no_grad():
        ref = straight.encoder.eval()((crops.float() / 127.5 - 1)) + straight.latent_avg
    assert torch.equal(codes, ref)
    raw = read_checkpoint(straight.final)
    assert not any(k.startswith("decoder.") for k in raw["state_dict"])


def _lpips_files(d):
    """LPIPS weight files in the official formats with random values (VGG16 convs + linear heads)."""
    g = torch.Generator().manual_seed(0)
    vgg, cin = {}, 3
    for idx, cout in zip((0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
                         (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)):
        vgg[f"features.{idx}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2.0 / (9 * cin)) ** 0.5
        vgg[f"features.{idx}.bias"] = torch.zeros(cout)
        cin = cout
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g)
           for i, c in enumerate((64, 128, 256, 512, 512))}
    torch.save(vgg, d / "vgg16.pth")
    torch.save(lin, d / "vgg.pth")
    return d / "vgg16.pth", d / "vgg.pth"


@pytest.mark.slow
def test_decoder_export_and_lpips(tmp_path):
    """A generator with z_dim = w_dim (rosinality's only kind) goes into decoder.* and loads back;
    LPIPS from weight files joins the loss, and a resume must use it too."""
    from facefeat.models.e4e import load_e4e
    from facefeat.models.stylegan2.layouts import generator_from_state_dict

    G = toy_generator(z_dim=512, seed=1)
    cfg = _small(steps=1, holdout=0, mirror=False, eval_every=0, sample_every=0, n_eval=2)
    lp = _lpips_files(tmp_path)
    res = train_encoder(G, out=tmp_path / "r", config=cfg, lpips=lp, progress=False)
    ck = load_e4e(res.final, num_ws=G.num_ws, decoder_loader=generator_from_state_dict)
    ws = G.mapping(torch.randn(2, 512, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(ck.decoder.synthesis(ws), G.synthesis(ws))
    assert ck.opts["lpips_lambda"] == 0.8 and ck.opts["decoder"] == "rosinality-layout generator"
    step = _records(tmp_path / "r", "step")[0]
    assert step["loss/lpips"] > 0
    assert step["loss/total"] == pytest.approx(step["loss/pixel"] + 0.8 * step["loss/lpips"]
                                               + step["loss/latent"] + 2e-4 * step["loss/delta"], rel=1e-5)
    with pytest.raises(ConfigError, match="with LPIPS"):
        train_encoder(G, out=tmp_path / "r", config=cfg.replace(steps=2), resume=True, progress=False)


@pytest.mark.slow
def test_cli_smoke(tmp_path, g_file, faces32, capsys):
    """--synthetic and --images together through the CLI; --resume finds the run's generator and images."""
    import PIL.Image

    from facefeat.cli import main

    crops = tmp_path / "crops"
    crops.mkdir()
    for i, f in enumerate(faces32[:6]):
        PIL.Image.fromarray(f).save(crops / f"{i:02d}.png")
    out = tmp_path / "enc"
    argv = ["train", "encoder", "--generator", str(g_file), "--synthetic", "20", "--images", str(crops),
            "--holdout", "2", "--steps", "2", "--batch-size", "2",
            "--n-eval", "2", "--eval-every", "1", "--save-every", "1", "--keep-snapshots", "1", "--out", str(out),
            "--no-progress", "--seed", "3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "encoder-final.pt" in printed and "s/step" in printed and "latent r" in printed
    assert (out / "encoder-final.pt").is_file() and (out / "samples-0000002.png").is_file()
    assert sorted(p.name for p in out.glob("encoder-snapshot-*")) == ["encoder-snapshot-0000002.pt"]
    opts = json.loads((out / "training_options.json").read_text())
    assert opts["generator"]["source"] == str(g_file) and opts["input_size"] == 32
    assert opts["batch"] == {"synthetic": 1, "real": 1} and opts["data"]["n_images"] == 4
    assert "real" in _records(out, "eval")[-1]
    # a longer resume through the CLI; changing a non-resumable setting is refused
    assert main(["train", "encoder", "--resume", "--out", str(out), "--steps", "3", "--no-progress"]) == 0
    assert [r["step"] for r in _records(out, "step")] == [1, 2, 3]
    assert main(["train", "encoder", "--resume", "--out", str(out), "--lr", "0.01", "--no-progress"]) == 2
    assert "lr was 0.0001" in capsys.readouterr().err


@pytest.mark.slow
def test_training_works_measured(tmp_path, G):
    """A few CPU minutes on the toy 32 px generator: held-out reconstructions clearly beat the
    w_avg render and the encoder's W+ codes correlate with the true latents of held-out samples.

    ``latent_r``: Pearson r across the 64 held-out samples per (style row, dimension), averaged
    over all 8 x 512 of them (see ``latent_correlation``)."""
    cfg = EncoderTrainingConfig(synthetic=100_000, steps=240, batch_size=8, lr=1e-4, n_eval=64, eval_every=80,
                                sample_every=0, save_every=0, seed=0)
    t0 = time.perf_counter()
    res = train_encoder(G, out=tmp_path / "m", config=cfg, progress=False)
    wall = time.perf_counter() - t0
    syn = res.last_eval["synthetic"]
    print(f"\nencoder training, toy 32 px generator, {res.step} steps x batch 8 on CPU: "
          f"held-out MSE {syn['mse']:.4f} vs w_avg render {syn['mse_w_avg']:.4f} (ratio {syn['mse_ratio']:.3f}); "
          f"latent r per dim {syn['latent_r']:.3f} (row 0 {syn['latent_r_w0']:.3f}, "
          f"pooled {syn['latent_r_pooled']:.3f}); "
          f"{res.sec_per_step:.3f} s/step, wall {wall:.0f} s")
    assert syn["mse"] < 0.5 * syn["mse_w_avg"]
    assert syn["latent_r"] > 0.15 and syn["latent_r_pooled"] > 0.15
    assert syn["latent_mse"] < syn["latent_mse_w_avg"]


@pytest.mark.slow
def test_the_e4e_extractor_reads_a_trained_encoder(runs, g_file, G):
    """encoder-final.pt + the generator it was trained for, through the built-in e4e extractor."""
    from facefeat.engine import Face, FaceBatch
    from facefeat.engine.registry import Registry
    from facefeat.models.e4e import encode, load_e4e

    e4e_plugin = pytest.importorskip("facefeat_builtins.e4e")
    straight, _, _, images = runs
    registry = Registry()
    registry.add_extractor(e4e_plugin.E4EExtractor)
    ext = registry.create("e4e", {"encoder": str(straight.final), "generator": str(g_file)})
    ext.load("cpu")
    crops = images.load(range(2)).permute(0, 2, 3, 1).numpy()
    batch = FaceBatch([Face(f"img{i}", f"s{i}", np.zeros((68, 2)), (0, 0, 1, 1), aligned={32: c})
                       for i, c in enumerate(crops)])
    table = ext.extract(batch)
    codes = np.asarray(table.column("e4e__latent").to_pylist(), dtype=np.float32).reshape(2, 8, 512)
    ck = load_e4e(straight.final, num_ws=G.num_ws)
    np.testing.assert_array_equal(codes, encode(ck.encoder, crops, latent_avg=ck.latent_avg).numpy())
    assert all(v is not None and 0 <= v <= 1 for v in table.column("diag__e4e__mse").to_pylist())


def test_progressive_stages_and_delta_loss(G):
    """progressive_every=k: row 0 alone first (no deltas, no delta loss), one more row every k steps."""
    from facefeat.training.encoder import EncoderTrainer

    tr = EncoderTrainer(G, _small(progressive_every=2, batch_size=1, synthetic=4))
    assert [tr.stage(s) for s in (0, 1, 2, 3, 4, 13, 14, 100)] == [0, 0, 1, 1, 2, 6, 7, 7]
    img, ws = tr.synthetic_batch(1)
    assert img.shape == (1, 3, 32, 32) and ws.shape == (1, 8, 512)
    losses = tr.losses(img, ws)
    assert float(losses["delta"].detach()) == 0.0
    with torch.no_grad():
        codes = tr.codes(tr.encoder_input(img))
    assert torch.equal(codes[:, 1:], codes[:, :1].expand(-1, 7, -1))
    tr.step_count = 4
    tr.set_stage()
    with torch.no_grad():
        codes = tr.codes(tr.encoder_input(img))
    assert not torch.equal(codes[:, 1], codes[:, 0]) and torch.equal(codes[:, 3:], codes[:, :1].expand(-1, 5, -1))
    assert float(tr.losses(img, ws)["delta"].detach()) > 0


@pytest.mark.slow
def test_init_from_an_e4e_checkpoint(tmp_path, G):
    """Training starts from the file's encoder weights (a file without latent_avg is fine: the
    generator's mean w is used) and updates them."""
    from facefeat.models.e4e import Encoder4Editing, save_e4e_checkpoint
    from facefeat.training.encoder import EncoderTrainer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        enc = Encoder4Editing(32, input_size=32)
    path = save_e4e_checkpoint(tmp_path / "e4e32.pt", enc, latent_avg=None)
    with pytest.raises(ConfigError, match="takes 32 px inputs"):
        EncoderTrainer(G, _small(input_size=64), init_from=path)
    tr = EncoderTrainer(G, _small(batch_size=1), init_from=path)
    ref = enc.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in tr.encoder.state_dict().items())
    assert tr.init_info["init"] == str(path) and len(tr.init_info["sha256"]) == 64
    tr.step()
    assert not torch.equal(tr.encoder.styles[0].linear.weight, ref["styles.0.linear.weight"])
