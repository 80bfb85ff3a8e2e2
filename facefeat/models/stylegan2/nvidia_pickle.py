"""Read NVIDIA stylegan2-ada-pytorch network pickles without running any of their code.

A snapshot (``network-snapshot-*.pkl``) is ``pickle.dump`` of ``{'G', 'D', 'G_ema', ...}``
where every network object is saved through ``torch_utils.persistence`` as a call to
``_reconstruct_persistent_obj(meta)``; ``meta`` carries the *source text* of
``training/networks.py`` (``module_src``), the class name and the object's ``__dict__``
(``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs``, ...). Tensors are rebuilt from
per-storage blobs in the legacy ``torch.save`` format.

:class:`RestrictedUnpickler` allows exactly the globals such a file needs and nothing else:

* ``torch_utils.persistence._reconstruct_persistent_obj`` -> a local stand-in that returns a
  :class:`PersistentObject` (class name + state). The embedded source is kept as text only (its
  sha256 is recorded); it is never compiled, imported or executed.
* ``dnnlib.util.EasyDict`` -> a local ``dict`` subclass.
* ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``,
  ``torch._utils._rebuild_parameter``, ``numpy.dtype``, ``numpy.core.multiarray.scalar``
  (numeric dtypes only).
* ``torch.storage._load_from_bytes`` -> a local function that reads the blob with
  ``torch.load(..., weights_only=True)``, so the inner unpickler is restricted as well.

Any other global raises :class:`~facefeat.errors.ModelError` naming the file and the global.
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch._utils

from facefeat.errors import ModelError


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


@dataclass
class PersistentObject:
    """What ``_reconstruct_persistent_obj(meta)`` describes, kept as data.

    Attributes
    ----------
    class_name : str
        e.g. ``"Generator"``, ``"SynthesisLayer"``.
    state : dict
        The object's ``__dict__`` as pickled (``_parameters``, ``_buffers``, ``_modules``,
        ``_init_kwargs``, plain attributes).
    source_sha256 : str
        sha256 of the embedded module source (never executed).
    version : int
        ``torch_utils.persistence`` format version (6 for stylegan2-ada-pytorch).
    """

    class_name: str
    state: dict[str, Any]
    source_sha256: str = ""
    version: int = 0
    source_chars: int = field(default=0, repr=False)

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return _plain(self.state.get("_init_kwargs") or {})

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The ``nn.Module.state_dict()`` the object would have: parameters and persistent
        buffers of it and its submodules, in registration order."""
        out: dict[str, torch.Tensor] = {}
        _collect(self, "", out)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _collect(obj: PersistentObject, prefix: str, out: dict[str, torch.Tensor]) -> None:
    state = obj.state
    for name, p in (state.get("_parameters") or {}).items():
        if p is not None:
            out[prefix + name] = p
    non_persistent = set(state.get("_non_persistent_buffers_set") or ())
    for name, b in (state.get("_buffers") or {}).items():
        if b is not None and name not in non_persistent:
            out[prefix + name] = b
    for name, sub in (state.get("_modules") or {}).items():
        if sub is None:
            continue
        if not isinstance(sub, PersistentObject):
            raise ModelError(f"submodule {prefix + name} is a {type(sub).__name__}, not a persistent network object")
        _collect(sub, f"{prefix}{name}.", out)


def _reconstruct_persistent_obj(meta: Mapping[str, Any]) -> PersistentObject:
    if not isinstance(meta, Mapping) or meta.get("type") != "class":
        raise pickle.UnpicklingError("persistent object without type='class' metadata")
    src = meta.get("module_src") or ""
    if not isinstance(src, str):
        raise pickle.UnpicklingError("persistent object module_src is not text")
    state = meta.get("state")
    if not isinstance(state, Mapping):
        raise pickle.UnpicklingError("persistent object state is not a dict")
    return PersistentObject(class_name=str(meta.get("class_name")), state=dict(state),
                            source_sha256=hashlib.sha256(src.encode("utf-8")).hexdigest(),
                            version=int(meta.get("version", 0)), source_chars=len(src))


def _load_from_bytes(b: bytes) -> Any:
    # torch.storage._load_from_bytes calls torch.load(weights_only=False) -- never do that.
    return torch.load(io.BytesIO(b), weights_only=True, map_location="cpu")


def _numpy_dtype(*args: Any) -> np.dtype:
    dt = np.dtype(*args)
    if dt.hasobject:
        raise pickle.UnpicklingError("object dtypes are not allowed")
    return dt


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> np.generic:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("numpy scalar with a non-numeric dtype")
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("numpy scalar without raw bytes")
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


#: The globals an NVIDIA network pickle may reference, and what each becomes here.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`ALLOWED_GLOBALS`."""

    def __init__(self, file: io.BufferedIOBase, *, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            pass
        hint = ""
        if module.startswith("dnnlib.tflib"):
            hint = (" This is a TensorFlow StyleGAN/StyleGAN2 pickle: convert it to a PyTorch pickle with "
                    "stylegan2-ada-pytorch's legacy.py first.")
        raise ModelError(f"{self.source}: refusing to load global {module}.{name} from the pickle: it is not one "
                         f"of the tensor/network-state globals an NVIDIA StyleGAN2 network pickle needs, and "
                         f"loading it could run code.{hint}")

    def persistent_load(self, pid: Any) -> Any:
        raise ModelError(f"{self.source}: unexpected persistent id in the pickle; not an NVIDIA network pickle")


@dataclass
class NvidiaPickle:
    """The contents of an NVIDIA network pickle.

    Attributes
    ----------
    path : Path
    networks : dict[str, PersistentObject]
        The top-level network objects (``G``, ``D``, ``G_ema``, ``augment_pipe``, ...).
    other : dict[str, Any]
        Top-level entries that are not network objects (``training_set_kwargs``, ...).
    """

    path: Path
    networks: dict[str, PersistentObject]
    other: dict[str, Any]


def read_nvidia_pickle(path: str | os.PathLike) -> NvidiaPickle:
    """Read ``path`` with :class:`RestrictedUnpickler`.

    Raises
    ------
    ModelError
        Disallowed global (named), truncated or corrupt file, or not a dict of networks.
    """
    path = Path(path)
    source = str(path)
    try:
        with open(path, "rb") as fh:
            data = RestrictedUnpickler(fh, source=source).load()
    except ModelError:
        raise
    except FileNotFoundError:
        raise ModelError(f"{source}: file not found") from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RuntimeError, OSError, MemoryError) as exc:
        raise ModelError(f"{source}: cannot read the NVIDIA network pickle ({type(exc).__name__}: {exc}); the file "
                         f"is truncated or corrupt, re-download it and compare its sha256") from exc
    if not isinstance(data, Mapping):
        raise ModelError(f"{source}: the pickle holds a {type(data).__name__}, not a dict of networks "
                         f"(expected keys such as 'G_ema', 'G', 'D')")
    networks = {k: v for k, v in data.items() if isinstance(v, PersistentObject)}
    other = {k: v for k, v in data.items() if not isinstance(v, PersistentObject)}
    return NvidiaPickle(path=path, networks=networks, other=other)
