"""The torch extractors check their device in ``load(device)`` when called from Python (the
command line checks it earlier): a GPU that is not there is a ConfigError naming the option and
the devices available, before any weights are read."""

from __future__ import annotations

import pytest

from facefeat.engine.registry import load_registry
from facefeat.errors import ConfigError
from tests.conftest import DATA

TINY = DATA / "stylegan2" / "nvidia_tiny_network-snapshot.pkl"


def _extractors(e4e_files):
    registry = load_registry()
    return {"stylegan2": lambda **c: registry.create("stylegan2", {"checkpoint": str(TINY), "steps": 1, **c}),
            "e4e": lambda **c: registry.create("e4e", {"encoder": str(e4e_files["encoder"]), **c})}


@pytest.mark.parametrize("name", ["stylegan2", "e4e"])
def test_load_on_a_missing_device_is_a_config_error(no_gpu, e4e_files, name):
    make = _extractors(e4e_files)[name]
    with pytest.raises(ConfigError, match=r"^device cuda: this torch .* built without CUDA support.*; "
                                          r"available on this machine: cpu$"):
        make().load("cuda")  # the run's device
    with pytest.raises(ConfigError, match=rf"^{name}.device cuda:3: .*; available on this machine: cpu$"):
        make(device="cuda:3").load("cpu")  # the extractor's own device wins over the run's
    with pytest.raises(ConfigError, match=r"^device 'tpu' is not a device facefeat can use"):
        make().load("tpu")


@pytest.mark.parametrize("name", ["stylegan2", "e4e"])
def test_load_on_the_cpu_still_works(no_gpu, e4e_files, name):
    ext = _extractors(e4e_files)[name]()
    ext.load("cpu")
    assert ext._device == "cpu"
