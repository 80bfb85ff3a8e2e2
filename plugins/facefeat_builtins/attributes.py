"""The ``attributes`` extractor: apparent age and sex from dlib's CC0 age and gender networks.

A thin plugin over :mod:`facefeat.face.attributes` (ONNX Runtime, CPU). Apparent age is the
FaceAge-style prognostic feature (FaceAge, Lancet Digital Health 2025: HR 1.15 per decade of
apparent age); the sex probability is mainly a covariate and a check of the labels. Every
column is documented in ``docs/features/attributes.md``.

The networks see the crop they were trained on, not the FFHQ-aligned image: dlib's face chip
(padding 0.2) aligned on the 5-point landmarks fitted to the detector box, cut from the
original photo. On the example photos the FFHQ crop resized to 64/32 px moved the age by up
to 26 years and flipped the sex of one face, so it is not offered.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from facefeat.engine import Extractor, FaceBatch, Requires, embedding_array, embedding_field, hookimpl
from facefeat.errors import ConfigError, InputError
from facefeat.face.attributes import AGE_CLASS_YEARS, AgeGenderModel, age_sd

NAME = "attributes"


def _field(name: str, unit: str, low: float, high: float, description: str) -> pa.Field:
    meta = {
        b"unit": unit.encode(),
        b"range": json.dumps([low, high]).encode(),
        b"description": description.encode(),
    }
    return pa.field(name, pa.float64(), metadata=meta)


AGE_FIELD = _field(
    f"{NAME}__apparent_age", "years", 0.25, 80.0,
    "apparent age: expectation of dlib dnn_age_predictor_v1's 81-class softmax, sum_k w_k p_k, "
    "w = (0.25, 1, ..., 80) years",
)
P_FEMALE_FIELD = _field(
    f"{NAME}__p_female", "probability", 0.0, 1.0,
    "softmax probability of the class 'female' of dlib dnn_gender_classifier_v1 (apparent sex as "
    "labelled in its training data; 1 - p is 'male')",
)
AGE_SD_FIELD = _field(
    f"diag__{NAME}__age_sd", "years", 0.0, 40.0,
    "standard deviation of the predicted age distribution (the network's own spread, not a "
    "calibrated error)",
)


class AttributesExtractor(Extractor):
    """Apparent age (years) and the probability of the class 'female', per face.

    Config
    ------
    age : bool, default True
        Run the age network (``attributes__apparent_age``, ``diag__attributes__age_sd``).
    gender : bool, default True
        Run the gender network (``attributes__p_female``).
    include_age_distribution : bool, default False
        Add the 81 age-class probabilities as ``attributes__age_probabilities`` (float32
        ``[81]`` embedding; classes 0.25, 1, 2, ..., 80 years).
    threads : int, default 1
        ONNX Runtime intra-op threads per network (the engine parallelises over processes).
    """

    name = NAME
    version = "1.0.0"
    config_schema = {
        "type": "object",
        "properties": {
            "age": {"type": "boolean", "default": True, "description": "estimate apparent age (years)"},
            "gender": {"type": "boolean", "default": True,
                       "description": "estimate the probability of the class 'female'"},
            "include_age_distribution": {
                "type": "boolean",
                "default": False,
                "description": "add the 81 age-class probabilities as a [81] float32 column",
            },
            "threads": {"type": "integer", "minimum": 1, "maximum": 64, "default": 1,
                        "description": "ONNX Runtime intra-op threads per network"},
        },
        "additionalProperties": False,
    }

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self._age = bool(self.config.get("age", True))
        self._gender = bool(self.config.get("gender", True))
        self._distribution = bool(self.config.get("include_age_distribution", False))
        self._threads = int(self.config.get("threads", 1))
        if not (self._age or self._gender):
            raise ConfigError(
                "extractor 'attributes': both 'age' and 'gender' are false, nothing to compute; "
                "enable at least one (or drop the extractor from the run)"
            )
        if self._distribution and not self._age:
            raise ConfigError("extractor 'attributes': include_age_distribution needs age: true")
        tasks = tuple(t for t, on in (("age", self._age), ("gender", self._gender)) if on)
        self._model = AgeGenderModel(tasks, threads=self._threads)

    def requires(self) -> Requires:
        # the chips are cut from the original photo with the 5-point fit on the detector box
        return Requires(aligned_sizes=(), landmarks=True, original=True)

    def output_schema(self) -> pa.Schema:
        fields = []
        if self._age:
            fields.append(AGE_FIELD)
        if self._gender:
            fields.append(P_FEMALE_FIELD)
        if self._distribution:
            dist = embedding_field(f"{NAME}__age_probabilities", [len(AGE_CLASS_YEARS)],
                                   "softmax over dlib dnn_age_predictor_v1's age classes 0.25, 1, 2, ..., 80 years")
            fields.append(dist.with_metadata({**dist.metadata, b"unit": b"probability"}))
        if self._age:
            fields.append(AGE_SD_FIELD)
        return pa.schema(fields)

    def model_files(self) -> dict[str, str]:
        return self._model.model_files()

    def load(self, device: str = "cpu") -> None:
        """Create the ONNX Runtime sessions. They run on the CPU whatever ``device`` says (the
        networks are tiny: a 64x64 ResNet-10 and a 32x32 CNN); ``device`` is accepted for the
        common interface."""
        self._model.load()

    def extract(self, batch: FaceBatch) -> pa.RecordBatch:
        schema = self.output_schema()
        n = len(batch)
        if n == 0:
            return pa.RecordBatch.from_pylist([], schema=schema)
        for face in batch:
            if face.original is None:
                raise InputError(
                    f"image {face.image_id}: the attributes extractor needs the original image "
                    f"(requires().original is True) but the batch holds none; this is an engine bug"
                )
        pred = self._model.predict([f.original for f in batch], [f.box for f in batch])
        columns: dict[str, Any] = {}
        if self._age:
            columns[AGE_FIELD.name] = pred.age
            columns[AGE_SD_FIELD.name] = age_sd(pred.age_probabilities)
        if self._gender:
            columns[P_FEMALE_FIELD.name] = pred.p_female
        if self._distribution:
            columns[f"{NAME}__age_probabilities"] = embedding_array(pred.age_probabilities)
        arrays = [columns[f.name] if isinstance(columns[f.name], pa.Array)
                  else pa.array(np.asarray(columns[f.name], dtype=np.float64), type=f.type) for f in schema]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)


@hookimpl
def facefeat_register(registry) -> None:
    registry.add_extractor(AttributesExtractor)
