"""The ``face_descriptor`` extractor: dlib's 128-D ResNet face descriptor.

dlib's ``dlib_face_recognition_resnet_model_v1`` (from the ``face-recognition-models`` package)
maps a face, cut out with the 68 landmarks, to a 128-D vector in which two photos of the same
person lie less than about 0.6 apart (Euclidean) and photos of different people further; dlib
reports 99.38 % accuracy on the LFW benchmark with that threshold. The column is documented in
``docs/features/face_descriptor.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from facefeat.engine import Extractor, FaceBatch, Requires, embedding_array, embedding_field, hookimpl
from facefeat.errors import InputError
from facefeat.face.dlib_models import dlib_model_path

NAME = "face_descriptor"
DIM = 128


def _shape(face) -> Any:
    """Rebuild a ``dlib.full_object_detection`` from a Face's box and 68 landmarks."""
    import dlib

    left, top, right, bottom = (int(v) for v in face.box)
    # the shape predictor returns integer pixel positions; dlib.point holds integers
    pts = np.rint(np.asarray(face.landmarks, dtype=np.float64)).astype(np.int64)
    parts = dlib.points([dlib.point(int(x), int(y)) for x, y in pts])
    return dlib.full_object_detection(dlib.rectangle(left, top, right, bottom), parts)


class FaceDescriptorExtractor(Extractor):
    """dlib's 128-D face-recognition descriptor of each face.

    Config
    ------
    num_jitters : int, default 0
        dlib's ``num_jitters``: 0 and 1 both compute the descriptor once; ``n > 1`` averages the
        descriptors of ``n`` randomly jittered (shifted, rotated, scaled, mirrored) copies, about
        ``n`` times slower and slightly more robust. dlib draws the jitters from a generator
        owned by the model object; to keep every face's descriptor independent of batch
        composition and order (so a resumed run equals an uninterrupted one) the model is
        reloaded for each face when ``num_jitters > 1``.
    padding : float, default 0.25
        Extra border around the face chip, as a fraction of its size (dlib's default; the
        network was trained with 0.25).
    """

    name = NAME
    version = "1.0.0"
    config_schema = {
        "type": "object",
        "properties": {
            "num_jitters": {
                "type": "integer",
                "minimum": 0,
                "default": 0,
                "description": "average over this many random jitters of the face chip (0 or 1: none)",
            },
            "padding": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "default": 0.25,
                "description": "border around the 150x150 face chip, fraction of the chip size",
            },
        },
        "additionalProperties": False,
    }

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.num_jitters = int(self.config.get("num_jitters", 0))
        self.padding = float(self.config.get("padding", 0.25))
        self._model = None

    def requires(self) -> Requires:
        return Requires(aligned_sizes=(), landmarks=True, original=True)

    def output_schema(self) -> pa.Schema:
        return pa.schema(
            [
                embedding_field(
                    f"{NAME}__embedding",
                    [DIM],
                    "dlib_face_recognition_resnet_model_v1 128-D descriptor; same person if Euclidean distance < 0.6",
                )
            ]
        )

    def model_files(self) -> dict[str, str]:
        return {"face_descriptor": str(dlib_model_path("face_descriptor"))}

    def _new_model(self):
        import dlib

        return dlib.face_recognition_model_v1(str(dlib_model_path("face_descriptor")))

    def load(self, device: str = "cpu") -> None:
        """Load the network. dlib chooses its device when it is built (the PyPI wheels run on
        the CPU), so ``device`` is accepted for the common interface and otherwise unused."""
        if self._model is None:
            self._model = self._new_model()

    def extract(self, batch: FaceBatch) -> pa.RecordBatch:
        import dlib

        schema = self.output_schema()
        if len(batch) == 0:
            return pa.RecordBatch.from_pylist([], schema=schema)
        self.load()
        images, shapes = [], []
        for face in batch:
            if face.original is None:
                raise InputError(
                    f"image {face.image_id}: the face_descriptor extractor needs the original image "
                    f"(requires().original is True) but the batch holds none; this is an engine bug"
                )
            images.append(np.ascontiguousarray(face.original, dtype=np.uint8))
            shapes.append(_shape(face))
        if self.num_jitters <= 1:
            out = self._model.compute_face_descriptor(
                images, [dlib.full_object_detections([s]) for s in shapes], 0, self.padding
            )
            vectors = np.array([np.array(v[0]) for v in out], dtype=np.float64)
        else:
            vectors = np.array(
                [
                    np.array(self._new_model().compute_face_descriptor(img, shp, self.num_jitters, self.padding))
                    for img, shp in zip(images, shapes)
                ],
                dtype=np.float64,
            )
        return pa.RecordBatch.from_arrays([embedding_array(vectors.reshape(len(batch), DIM))], schema=schema)


@hookimpl
def facefeat_register(registry) -> None:
    registry.add_extractor(FaceDescriptorExtractor)
