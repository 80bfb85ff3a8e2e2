"""Checkpoint formats: detection, restricted unpickling, strict loading, conversion, errors."""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from facefeat.errors import ModelError
from facefeat.models.checkpoints import (
    check_resolution,
    convert_checkpoint,
    detect_format,
    load_discriminator,
    load_generator,
    read_checkpoint,
    save_checkpoint,
)
from facefeat.models.stylegan2.formats import read_facefeat
from facefeat.models.stylegan2.nvidia_pickle import read_nvidia_pickle

DIR = Path(__file__).resolve().parents[1] / "data" / "stylegan2"
NV_PKL = DIR / "nvidia_tiny_network-snapshot.pkl"
ROS_TRAIN = DIR / "rosinality_tiny_train_ckpt.pt"
ROS_CONV = DIR / "rosinality_tiny_converted_ckpt.pt"
N_W = 512  # mean_w samples for files without an average w (keeps the tests quick)


def _same_output(a, b, z=None):
    z = torch.randn(2, a.z_dim, generator=torch.Generator().manual_seed(0)) if z is None else z
    with torch.no_grad():
        return torch.equal(a(z, truncation_psi=0.7), b(z, truncation_psi=0.7))


# --------------------------------------------------------------------------------------------
# detection
# --------------------------------------------------------------------------------------------

def test_detect_format_from_content(tmp_path):
    assert detect_format(NV_PKL) == "nvidia-pickle"
    assert detect_format(ROS_TRAIN) == "rosinality"
    assert detect_format(ROS_CONV) == "rosinality"
    # names do not matter: a pickle called .pt is still a pickle
    renamed = tmp_path / "model.pt"
    shutil.copy(NV_PKL, renamed)
    assert detect_format(renamed) == "nvidia-pickle"
    w, c = convert_checkpoint(ROS_CONV, tmp_path / "conv")
    assert detect_format(w) == detect_format(c) == detect_format(tmp_path / "conv") == "facefeat"


def test_unknown_empty_missing(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"GIF89a" + bytes(100))
    with pytest.raises(ModelError, match=r"junk\.bin: unknown checkpoint format"):
        load_generator(junk)
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        load_generator(empty)
    with pytest.raises(ModelError, match="not found"):
        load_generator(tmp_path / "nope.pkl")


# --------------------------------------------------------------------------------------------
# restricted unpickling
# --------------------------------------------------------------------------------------------

class _RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_calling_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"G_ema": _RunsCommand(marker)}, protocol=4))
    assert detect_format(evil) == "nvidia-pickle"
    with pytest.raises(ModelError, match=r"evil\.pkl: refusing to load global (posix|os|nt)\.system"):
        load_generator(evil)
    assert not marker.exists()


class _StorageBlob:
    """Pickles as ``torch.storage._load_from_bytes(blob)``, like a tensor storage in a network pickle."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.blob,))


def test_storage_blob_is_loaded_with_weights_only(tmp_path):
    """torch's own _load_from_bytes would torch.load(weights_only=False) the blob."""
    marker = tmp_path / "pwned"
    inner = io.BytesIO()
    torch.save(_RunsCommand(marker), inner, _use_new_zipfile_serialization=False)
    evil = tmp_path / "evil_blob.pkl"
    evil.write_bytes(pickle.dumps({"G_ema": _StorageBlob(inner.getvalue())}, protocol=4))
    with pytest.raises(ModelError, match=r"evil_blob\.pkl"):
        read_nvidia_pickle(evil)
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("subprocess", "Popen"), ("torch", "load"),
                                         ("numpy", "load"), ("torch_utils.persistence", "persistent_class")])
def test_other_globals_are_refused(tmp_path, module, name):
    # GLOBAL opcode by hand, so the global need not exist here
    data = b"\x80\x04c" + f"{module}\n{name}\n".encode() + b"."
    path = tmp_path / "g.pkl"
    path.write_bytes(data)
    with pytest.raises(ModelError, match=f"{module}.{name}"):
        read_nvidia_pickle(path)


def test_tensorflow_pickle_gets_a_hint(tmp_path):
    path = tmp_path / "tf.pkl"
    path.write_bytes(b"\x80\x03cdnnlib.tflib.network\nNetwork\n.")
    with pytest.raises(ModelError, match="TensorFlow"):
        load_generator(path)


def test_pickle_embedded_source_is_kept_as_text_only():
    pk = read_nvidia_pickle(NV_PKL)
    g = pk.networks["G_ema"]
    assert g.class_name == "Generator" and g.version == 6
    assert g.source_chars == 37_391 and len(g.source_sha256) == 64
    assert "module_src" not in g.state


def test_rosinality_pt_with_other_class_is_refused(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"g_ema": {}, "args": _RunsCommand(tmp_path / "pwned")}, path)
    with pytest.raises(ModelError, match=r"bad\.pt: refusing to unpickle"):
        load_generator(path)
    assert not (tmp_path / "pwned").exists()


# --------------------------------------------------------------------------------------------
# corrupt / wrong files
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("src", [NV_PKL, ROS_TRAIN], ids=["pkl", "pt"])
def test_truncated_file(tmp_path, src):
    cut = tmp_path / f"cut{src.suffix}"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(ModelError, match=r"cut\.(pkl|pt).*(truncated|corrupt)"):
        load_generator(cut)


def test_wrong_keys_are_listed(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save({"g_ema": {"conv1.weight": torch.zeros(2, 3, 1, 1), "fc.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(ModelError, match=r"resnet\.pt.*not a StyleGAN2"):
        load_generator(path)
    with torch.serialization.safe_globals([argparse.Namespace]):
        ck = torch.load(ROS_TRAIN, weights_only=True)
    ck["g_ema"]["convs.5.extra"] = torch.zeros(1)
    del ck["g_ema"]["to_rgbs.2.bias"]
    path = tmp_path / "edited.pt"
    torch.save(ck, path)
    with pytest.raises(ModelError, match=r"Missing \(1\): to_rgbs\.2\.bias\. Unexpected \(1\): convs\.5\.extra"):
        load_generator(path)


def test_which_network(tmp_path):
    with pytest.raises(ModelError, match=r"no network 'X'.*\['G', 'G_ema'\]"):
        load_generator(NV_PKL, which="X")
    with pytest.raises(ModelError, match="no network 'D'"):
        load_discriminator(ROS_CONV)
    with pytest.raises(ModelError, match="is a discriminator"):
        load_generator(NV_PKL, which="D")
    g = load_generator(ROS_TRAIN, which="g", w_avg_samples=N_W)
    g_ema = load_generator(ROS_TRAIN, which="G_ema", w_avg_samples=N_W)
    assert not _same_output(g, g_ema)
    assert not torch.equal(g.synthesis.b8.conv0.noise_const, g_ema.synthesis.b8.conv0.noise_const)


def test_e4e_checkpoint_is_pointed_elsewhere(tmp_path):
    path = tmp_path / "e4e.pt"
    torch.save({"state_dict": {}, "opts": {}, "latent_avg": torch.zeros(18, 512)}, path)
    with pytest.raises(ModelError, match="load_e4e"):
        load_generator(path)


def test_legacy_torch_format(tmp_path):
    """Old converted rosinality files predate torch's zip format."""
    ck = torch.load(ROS_CONV, weights_only=True)
    path = tmp_path / "legacy.pt"
    torch.save(ck, path, _use_new_zipfile_serialization=False)
    assert detect_format(path) == "rosinality"
    assert _same_output(load_generator(path), load_generator(ROS_CONV))


def test_bare_rosinality_state_dict(tmp_path):
    ck = torch.load(ROS_CONV, weights_only=True)
    path = tmp_path / "bare.pt"
    torch.save(ck["g_ema"], path)
    G = load_generator(path, w_avg_samples=256)
    assert G.w_avg_source == "mean_w(n=256, seed=0)"


# --------------------------------------------------------------------------------------------
# facefeat format and conversion
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("src", [NV_PKL, ROS_TRAIN, ROS_CONV], ids=["nvidia", "ros-train", "ros-converted"])
def test_convert_round_trip(tmp_path, src):
    w, c = convert_checkpoint(src, tmp_path / "out", w_avg_samples=N_W)
    assert (w.name, c.name) == ("out.safetensors", "out.json")
    raw = read_checkpoint(src)
    for name, kind in raw.kinds.items():
        if kind == "generator":
            a, b = load_generator(src, which=name, w_avg_samples=N_W), load_generator(c, which=name)
            assert _same_output(a, b) and torch.equal(a.w_avg, b.w_avg)
            assert b.w_avg_source == a.w_avg_source
            assert b.provenance["source_format"] == "facefeat"
        else:
            a, b = load_discriminator(src, which=name), load_discriminator(w, which=name)
            x = torch.randn(4, 3, 32, 32)
            with torch.no_grad():
                assert torch.equal(a(x), b(x))
    doc = json.loads(c.read_text())
    prov = doc["provenance"]
    assert prov["source_sha256"] == raw_sha(src) and prov["source_format"] == raw.format
    assert set(doc["networks"]) == set(raw.networks)
    if raw.format == "nvidia-pickle":
        assert "non-commercial" in prov["source_info"]["license"]
        assert b"class Generator" not in w.read_bytes()  # NVIDIA's embedded source is not copied


def raw_sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_facefeat_is_strict_and_checked(tmp_path):
    w, c = convert_checkpoint(NV_PKL, tmp_path / "m", networks=["G_ema"])
    with pytest.raises(ModelError, match="already exists"):
        convert_checkpoint(NV_PKL, tmp_path / "m")
    # tampered weights: sha256 mismatch
    data = bytearray(w.read_bytes())
    data[-5] ^= 0xFF
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    shutil.copy(c, tmp_path / "bad.json")
    with pytest.raises(ModelError, match="sha256 .* does not match"):
        load_generator(bad)
    # truncated weights, hash check off: the reader still refuses
    (tmp_path / "cut.safetensors").write_bytes(w.read_bytes()[:1000])
    shutil.copy(c, tmp_path / "cut.json")
    with pytest.raises(ModelError, match="truncated"):
        read_facefeat(tmp_path / "cut.safetensors", verify_hash=False)
    # a missing partner file
    (tmp_path / "alone.safetensors").write_bytes(w.read_bytes())
    with pytest.raises(ModelError, match="alone.json is missing"):
        load_generator(tmp_path / "alone.safetensors")


def test_facefeat_extra_key_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    w, c = convert_checkpoint(ROS_CONV, tmp_path / "m")
    tensors = load_file(w)
    tensors["G_ema.synthesis.b4.conv1.extra"] = torch.zeros(1)
    save_file(tensors, w, metadata={"format": "facefeat-stylegan2", "format_version": "1"})
    doc = json.loads(c.read_text())
    doc["weights"]["sha256"] = raw_sha(w)  # a consistent pair, just with a key too many
    c.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=r"Unexpected \(1\): synthesis\.b4\.conv1\.extra"):
        load_generator(c)


def test_save_checkpoint_of_fresh_networks(tmp_path):
    from facefeat.models.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

    G = Generator(GeneratorConfig(z_dim=8, w_dim=8, img_resolution=8, channels={4: 8, 8: 4}, mapping_layers=1,
                                  conv_clamp=256.0))
    D = Discriminator(DiscriminatorConfig(img_resolution=8, channels={4: 8, 8: 4}, mbstd_group_size=2))
    w, c = save_checkpoint(tmp_path / "fresh", {"g_ema": G, "D": D}, provenance={"note": "random init"})
    G2, D2 = load_generator(c), load_discriminator(c)
    assert G2.config == G.config and D2.config == D.config
    assert _same_output(G.eval(), G2)
    assert json.loads(c.read_text())["provenance"]["note"] == "random init"


def test_expected_resolution():
    G = load_generator(NV_PKL, expected_resolution=32)
    check_resolution(G, 32)
    with pytest.raises(ModelError, match="generator resolution is 32 px but the aligned crop size is 256 px"):
        check_resolution(G, 256)
    with pytest.raises(ModelError, match="32 px"):
        load_generator(ROS_CONV, expected_resolution=1024)


def test_device_argument():
    G = load_generator(ROS_CONV, device="cpu")
    assert all(p.device.type == "cpu" for p in G.parameters())
    assert G.synthesis.resample_filter.device.type == "cpu" and not G.training
    assert not any(p.requires_grad for p in G.parameters())
