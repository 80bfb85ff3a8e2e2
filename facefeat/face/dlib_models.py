"""Where the dlib model files shipped by ``face-recognition-models`` live.

The package's ``__init__`` imports ``pkg_resources``, which current setuptools no longer ships,
so it must never be imported: its folder is located through ``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from facefeat.errors import ModelError

#: Model name -> file name inside ``face_recognition_models/models``.
DLIB_MODEL_FILES = {
    "shape_predictor_68": "shape_predictor_68_face_landmarks.dat",
    "shape_predictor_5": "shape_predictor_5_face_landmarks.dat",
    "cnn_face_detector": "mmod_human_face_detector.dat",
    "face_descriptor": "dlib_face_recognition_resnet_model_v1.dat",
}

#: sha256 of the files in face-recognition-models 0.3.0, recorded in run provenance.
DLIB_MODEL_SHA256 = {
    "shape_predictor_68": "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
    "shape_predictor_5": "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    "cnn_face_detector": "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
    "face_descriptor": "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
}


def dlib_model_path(name: str) -> Path:
    """Path of a dlib model file from the ``face-recognition-models`` package.

    Parameters
    ----------
    name : str
        One of :data:`DLIB_MODEL_FILES`.

    Raises
    ------
    ModelError
        Unknown name, or the package / file is not installed.
    """
    if name not in DLIB_MODEL_FILES:
        raise ModelError(f"unknown dlib model {name!r}; known: {', '.join(DLIB_MODEL_FILES)}")
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the dlib model files come from the 'face-recognition-models' package, which is not "
            "installed; fix: pip install face-recognition-models"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / DLIB_MODEL_FILES[name]
    if not path.is_file():
        raise ModelError(f"{path}: dlib model file missing; reinstall face-recognition-models")
    return path
