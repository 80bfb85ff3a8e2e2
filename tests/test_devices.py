"""Devices: what is available, one clear error for a device that is not there (every command
with --device, before any work), and a device lost mid-run told apart from bad input.

The machine running the tests has no GPU, but a machine with one may run them too: the tests
that need "no CUDA here" say so with ``no_gpu`` (tests/conftest.py: torch's own answers replaced), the ones about
a machine with two GPUs with ``two_gpus``; nothing is skipped.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from facefeat.cli import main
from facefeat.devices import available_devices, check_device, is_device_failure, resolve_device
from facefeat.errors import ConfigError
from tests.conftest import DATA, EXAMPLES, ROOT

TINY = DATA / "stylegan2" / "nvidia_tiny_network-snapshot.pkl"


@pytest.fixture
def two_gpus(monkeypatch):
    """A CUDA build of torch that sees two GPUs (their names and memory as torch reports them)."""
    names = ["NVIDIA Test A100", "NVIDIA Test L4"]
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: SimpleNamespace(name=names[i], total_memory=(80, 24)[i] * 2**30))
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


# -- available_devices / resolve_device ---------------------------------------------------------------
def test_available_devices_on_this_machine_match_what_torch_says():
    ids = available_devices()
    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert ids == ["cpu"] + [f"cuda:{i}" for i in range(n_cuda)] + (["mps"] if torch.backends.mps.is_available() else [])
    for spec in ids:  # every listed device resolves (and passes the probe)
        assert str(resolve_device(spec)) == spec


def test_available_devices_name_each_gpu(two_gpus):
    assert available_devices() == ["cpu", "cuda:0", "cuda:1"]
    assert available_devices(describe=True) == ["cpu", "cuda:0 (NVIDIA Test A100, 80.0 GiB)",
                                                "cuda:1 (NVIDIA Test L4, 24.0 GiB)"]


@pytest.mark.parametrize("spec, why", [
    ("cuda", r"--device cuda: this torch \(.*\) was built without CUDA support"),
    ("cuda:3", r"--device cuda:3: this torch \(.*\) was built without CUDA support"),
    ("mps", r"--device mps: this torch was built without MPS support"),
    ("tpu", r"--device 'tpu' is not a device facefeat can use: write cpu, cuda, cuda:N or mps"),
    ("garbage", r"--device 'garbage' is not a device facefeat can use"),
    ("gpu", r"--device 'gpu' is not a device facefeat can use \(did you mean cuda\?\)"),
    ("cuda:-1", r"--device 'cuda:-1' is not a device"),
])
def test_missing_devices_are_config_errors_listing_what_is_available(no_gpu, spec, why):
    with pytest.raises(ConfigError, match=why + r".*; available on this machine: cpu$"):
        resolve_device(spec)


def test_cpu_spellings_resolve_without_a_probe(no_gpu):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert check_device(None) == check_device("cpu:0") == "cpu"
    # torch's shape-only device: for library loaders reading a checkpoint's structure, never for --device
    assert resolve_device("meta", meta=True) == torch.device("meta")
    with pytest.raises(ConfigError, match="'meta' is not a device facefeat can use"):
        resolve_device("meta")


def test_gpu_index_past_the_last_one_names_the_gpus_there(two_gpus):
    with pytest.raises(ConfigError, match=r"^--device cuda:3: there is no CUDA device 3; this machine has 2 \(cuda:0 "
                                          r"to cuda:1\); available on this machine: cpu, cuda:0 \(NVIDIA Test A100, "
                                          r"80.0 GiB\), cuda:1 \(NVIDIA Test L4, 24.0 GiB\)$"):
        resolve_device("cuda:3")
    assert resolve_device("cuda:1", probe=False) == torch.device("cuda:1")
    assert resolve_device("cuda", probe=False) == torch.device("cuda")


def test_a_listed_gpu_that_cannot_compute_fails_the_probe(two_gpus, monkeypatch):
    def broken(*args, **kwargs):
        raise torch.AcceleratorError("CUDA error: no kernel image is available for execution on the device")

    monkeypatch.setattr(torch, "ones", broken)
    with pytest.raises(ConfigError, match=r"stylegan2.device cuda:0: the device is there but failed a test "
                                          r"computation \(AcceleratorError: CUDA error: no kernel image"):
        resolve_device("cuda:0", option="stylegan2.device")


def test_cuda_build_without_a_visible_gpu_says_why(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ConfigError, match=r"torch sees no CUDA device \(CUDA_VISIBLE_DEVICES='' hides them\); "
                                          r"available on this machine: cpu$"):
        resolve_device("cuda")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(ConfigError, match=r"no NVIDIA driver, or one too old"):
        resolve_device("cuda:0")


def test_check_device_does_not_import_torch_for_cpu():
    code = "import sys, facefeat.devices as d; print(d.check_device('cpu'), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["cpu", "False"]


# -- device failures during a run -----------------------------------------------------------------
def test_device_failures_are_told_from_bad_input_and_out_of_memory():
    assert is_device_failure(torch.AcceleratorError("CUDA error: an illegal memory access was encountered"))
    assert is_device_failure(RuntimeError("CUDA error: unspecified launch failure\nCUDA kernel errors might be ..."))
    assert is_device_failure(RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"))
    assert is_device_failure(RuntimeError("CUDA driver error: device not ready"))
    assert not is_device_failure(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_device_failure(RuntimeError("CUDA error: out of memory"))
    assert not is_device_failure(RuntimeError("shape '[2, 3]' is invalid for input of size 7"))
    assert not is_device_failure(ValueError("CUDA error: not a RuntimeError"))


def test_a_device_lost_mid_command_is_an_error_with_what_is_kept(monkeypatch, tmp_path, capsys):
    import facefeat.training.cli as training_cli

    def lost(args):
        raise torch.AcceleratorError("CUDA error: unspecified launch failure\nSearch for cudaErrorLaunchFailure")

    monkeypatch.setattr(training_cli, "_cmd_generator", lost)
    rc = main(["train", "generator", "--resume", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == ("facefeat train: error: the compute device failed (AcceleratorError: CUDA error: unspecified launch "
                   f"failure); {training_cli.INTERRUPT_NOTE}\n")


def test_other_errors_still_raise(monkeypatch, tmp_path):
    import facefeat.training.cli as training_cli

    def bug(args):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(training_cli, "_cmd_generator", bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):  # a bug keeps its traceback
        main(["train", "generator", "--resume", "--out", str(tmp_path)])


# -- every command with --device checks it before any work --------------------------------------------
def _commands(tmp: Path) -> dict[str, list[str]]:
    """Each command with --device, with arguments that would start real work on a usable device."""
    return {
        "extract": ["extract", str(EXAMPLES), "--out", str(tmp / "out"), "--no-progress"],
        "train": ["train", "generator", "--init", str(TINY), "--images", str(DATA / "ffhq_align"),
                  "--out", str(tmp / "out"), "--kimg", "0.004", "--no-progress"],
        "train encoder": ["train", "encoder", "--generator", str(TINY), "--synthetic", "8", "--steps", "1",
                          "--out", str(tmp / "out"), "--no-progress"],
        "simulate": ["simulate", "--n", "60", "--steps", "2", "-o", str(tmp / "out")],
        "explain edit": ["explain", "edit", "--model-dir", str(tmp / "model"), "--features", str(tmp / "run"),
                         "--subject", "S1", "-o", str(tmp / "out")],
        "explain regions": ["explain", "regions", "--model-dir", str(tmp / "model"), "--features", str(tmp / "run"),
                            "-o", str(tmp / "out")],
        "report": ["report", str(tmp / "run"), "--model-dir", str(tmp / "model"), "-o", str(tmp / "out")],
    }


_WHY = {"cuda": "was built without CUDA support", "cuda:3": "was built without CUDA support",
        "mps": "was built without MPS support", "tpu": "is not a device facefeat can use",
        "garbage": "is not a device facefeat can use"}


@pytest.mark.parametrize("spec", sorted(_WHY))
@pytest.mark.parametrize("command", sorted(_commands(Path("."))))
def test_every_command_refuses_a_missing_device_before_work(no_gpu, tmp_path, capsys, command, spec):
    argv = _commands(tmp_path)[command] + ["--device", spec]
    rc = main(argv)
    err = capsys.readouterr().err
    top = argv[0]
    assert rc == 2, err
    assert re.fullmatch(rf"facefeat {top}: error: --device '?{re.escape(spec)}'?[: ].*{_WHY[spec]}.*; "
                        r"available on this machine: cpu\n", err), err
    assert not (tmp_path / "out").exists()  # nothing started


def test_an_extractor_device_in_the_config_is_checked_before_the_run(no_gpu, tmp_path, capsys):
    rc = main(["extract", str(EXAMPLES), "--out", str(tmp_path / "out"), "-e", "stylegan2",
               "-s", f"stylegan2.checkpoint={TINY}", "-s", "stylegan2.device=cuda:1", "--no-progress"])
    assert rc == 2
    assert "facefeat extract: error: stylegan2.device cuda:1: this torch" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_extract_on_cuda_without_cuda_is_a_clear_error_not_a_traceback(tmp_path):
    # the case, as a user types it; CUDA_VISIBLE_DEVICES="" hides any GPU of the machine running this
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run([sys.executable, "-m", "facefeat.cli", "extract", str(EXAMPLES), "--out", str(tmp_path / "o"),
                          "--extractors", "stylegan2", "-s", f"stylegan2.checkpoint={TINY}", "--device", "cuda",
                          "--no-progress"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "AssertionError" not in res.stderr
    assert res.stderr.startswith("facefeat extract: error: --device cuda: ")
    assert "available on this machine: cpu" in res.stderr
    assert not (tmp_path / "o").exists()



# -- the library's own loaders, for callers from Python -----------------------------------------------
def test_generator_and_encoder_loaders_check_the_device(no_gpu, tmp_path):
    from facefeat.models.checkpoints import load_generator
    from facefeat.models.e4e import load_e4e
    from facefeat.simulate.pipeline import load_simulation_generator
    from facefeat.training.loop import train_generator

    missing = r"^device cuda:2: this torch .* built without CUDA support.*; available on this machine: cpu$"
    with pytest.raises(ConfigError, match=missing):
        load_generator(TINY, device="cuda:2")
    with pytest.raises(ConfigError, match=missing):
        load_e4e(tmp_path / "never-read.pt", device="cuda:2")  # checked before the file is opened
    with pytest.raises(ConfigError, match=missing):
        load_simulation_generator(None, device="cuda:2")
    with pytest.raises(ConfigError, match=missing):
        train_generator(init=TINY, images=DATA / "ffhq_align", out=tmp_path / "t", device="cuda:2")
    assert not (tmp_path / "t").exists()
    assert load_generator(TINY, device="cpu").mapping.w_avg.device.type == "cpu"
