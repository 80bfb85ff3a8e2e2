"""Compute devices: what this machine has, one check of a ``--device`` value before work
starts, and telling a device that failed mid-run from an ordinary error.

Every command with ``--device`` (extract, train, simulate, explain, report), the engine's
``plan_run`` (so ``facefeat study`` too), the generator and encoder loaders and the torch
extractors' ``load(device)`` go through :func:`resolve_device`, so asking for a GPU that is not there is
a :class:`~facefeat.errors.ConfigError` that lists what is available, raised before any image is
read, not an ``AssertionError: Torch not compiled with CUDA enabled`` from deep inside torch
after the run has started.

torch is imported inside the functions (never at import time), and :func:`check_device` does
not import it at all for ``cpu``.
"""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING

from facefeat.errors import ConfigError, DeviceError

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Device strings facefeat accepts: ``cpu``, ``cuda`` (torch's current CUDA device), ``cuda:N``, ``mps``.
_DEVICE = re.compile(r"^(?:(cpu|mps)(?::0)?|(cuda)(?::(\d+))?)$")
#: Words people write for a GPU that torch spells differently.
_HINTS = {"gpu": "cuda", "cuda0": "cuda:0", "nvidia": "cuda", "metal": "mps", "apple": "mps"}


def available_devices(*, describe: bool = False) -> list[str]:
    """The devices torch can use on this machine, in the spelling ``--device`` takes.

    Parameters
    ----------
    describe : bool
        Add each CUDA device's name and memory, e.g. ``"cuda:0 (NVIDIA H200, 139.8 GiB)"``.

    Returns
    -------
    list of str
        ``"cpu"`` first, then ``"cuda:0"`` ... ``"cuda:N-1"`` when torch sees CUDA devices,
        then ``"mps"`` on Apple silicon with an MPS build of torch.
    """
    import torch

    out = ["cpu"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            label = f"cuda:{i}"
            if describe:
                props = torch.cuda.get_device_properties(i)
                label += f" ({props.name}, {props.total_memory / 2**30:.1f} GiB)"
            out.append(label)
    if torch.backends.mps.is_available():
        out.append("mps")
    return out


def _available_text() -> str:
    return "available on this machine: " + ", ".join(available_devices(describe=True))


def resolve_device(spec: "str | torch.device", *, option: str = "--device", probe: bool = True,
                   meta: bool = False) -> "torch.device":
    """Check that ``spec`` names a device this machine has and return it as a ``torch.device``.

    Parameters
    ----------
    spec : str or torch.device
        ``cpu``, ``cuda`` (torch's current CUDA device), ``cuda:N`` or ``mps``.
    option : str
        How the user wrote it (``--device``, ``stylegan2.device``): named in the error.
    probe : bool
        Run one tiny computation on the device, so a device that torch lists but cannot use
        (driver too old for the build, a GPU in an error state) fails here, before any work.
    meta : bool
        Also accept torch's ``meta`` device (shapes without data, no hardware): for library
        code that reads a checkpoint's structure only, never for a user's ``--device``.

    Returns
    -------
    torch.device

    Raises
    ------
    ConfigError
        Unknown device string; CUDA asked for with a torch built without CUDA, with no visible
        CUDA device, or with an index past the last device; MPS where there is none; a device
        that fails the probe. The message lists the devices that are available.
    """
    import torch

    text = str(spec).strip().lower()
    if meta and text == "meta":
        return torch.device("meta")
    match = _DEVICE.match(text)
    if match is None:
        hint = f" (did you mean {_HINTS[text]}?)" if text in _HINTS else ""
        raise ConfigError(f"{option} {str(spec)!r} is not a device facefeat can use{hint}: write cpu, cuda, cuda:N "
                          f"or mps; {_available_text()}")
    kind = match.group(1) or match.group(2)
    if kind == "cuda":
        if not torch.backends.cuda.is_built():
            raise ConfigError(f"{option} {text}: this torch ({torch.__version__}) was built without CUDA support; "
                              f"install a CUDA build of torch to use a GPU, or use cpu; {_available_text()}")
        if not torch.cuda.is_available():
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            why = (f"CUDA_VISIBLE_DEVICES={visible!r} hides them" if visible is not None
                   else "no NVIDIA driver, or one too old for this torch build")
            raise ConfigError(f"{option} {text}: torch sees no CUDA device ({why}); {_available_text()}")
        index = match.group(3)
        count = torch.cuda.device_count()
        if index is not None and int(index) >= count:
            raise ConfigError(f"{option} {text}: there is no CUDA device {index}; this machine has {count} "
                              f"(cuda:0 to cuda:{count - 1}); {_available_text()}")
    elif kind == "mps" and not torch.backends.mps.is_available():
        why = ("this torch was built without MPS support" if not torch.backends.mps.is_built()
               else "MPS needs Apple silicon with macOS 12.3 or later")
        raise ConfigError(f"{option} mps: {why}; {_available_text()}")
    device = torch.device(f"{kind}:{match.group(3)}" if match.group(3) is not None else kind)
    if probe and kind != "cpu":
        try:
            ok = float((torch.ones(1, device=device) + 1).sum().item()) == 2.0
        except Exception as exc:  # whatever torch raises for a device it lists but cannot use
            raise ConfigError(f"{option} {text}: the device is there but failed a test computation "
                              f"({type(exc).__name__}: {exc}); {_available_text()}") from None
        if not ok:
            raise ConfigError(f"{option} {text}: the device computed 1 + 1 wrongly; {_available_text()}")
    return device


def check_device(spec: "str | torch.device | None", *, option: str = "--device", meta: bool = False) -> str:
    """:func:`resolve_device` for config values and command-line options: returns the device
    as a string (``"cuda:1"``), ``None`` as ``"cpu"``, and does not import torch for ``cpu``
    (commands whose extractors never use torch stay quick)."""
    if spec is None or str(spec).strip().lower() in ("cpu", "cpu:0"):
        return "cpu"
    return str(resolve_device(spec, option=option, meta=meta))


# Substrings of the messages torch raises when a GPU stops working under a running program
# (lost device, driver reset, illegal access, ECC error): the device, not the input, is at fault,
# and every later batch would fail the same way. Out-of-memory is not among them: a smaller
# batch can still succeed.
_FAILURE_TEXT = ("cuda error", "cuda driver error", "cudnn_status_", "cublas_status_", "cudaerror",
                 "device-side assert", "mps backend failed")


def is_device_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says that the compute device failed (as opposed to bad input or OOM).

    True for ``torch.AcceleratorError`` and for the ``RuntimeError`` texts torch uses for a
    lost or broken GPU; False for ``torch.OutOfMemoryError`` and for every exception when torch
    is not even imported (then no device was used).
    """
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(exc, RuntimeError):
        return False
    if isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return False
    if isinstance(exc, getattr(torch, "AcceleratorError", ())):
        return True
    text = str(exc).lower()
    return any(t in text for t in _FAILURE_TEXT) and "out of memory" not in text


def raise_if_device_failure(exc: BaseException, *, context: str, kept: str) -> None:
    """Raise :class:`~facefeat.errors.DeviceError` from ``exc`` when it is a device failure
    (:func:`is_device_failure`); return otherwise.

    ``context`` says what was running (``"extractor 'stylegan2'"``), ``kept`` what survives and
    how to go on (``"finished batches are kept in runs/x/.parts; re-run the same command"``).
    """
    if is_device_failure(exc):
        raise DeviceError(f"{context}: the compute device failed ({type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no message'}); "
                          f"{kept}") from exc
