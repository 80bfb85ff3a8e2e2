"""The ``landmarks`` extractor: face geometry and head pose from the 68 landmarks.

A thin plugin over :mod:`facefeat.face.geometry` and :mod:`facefeat.face.pose`; every column
is documented in ``docs/features/landmarks.md``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from facefeat.engine import Extractor, FaceBatch, Requires, embedding_array, embedding_field, hookimpl
from facefeat.face.geometry import FEATURES, FeatureSpec, interocular_distance, landmark_features_batch
from facefeat.face.pose import head_pose_batch

NAME = "landmarks"

#: Head-pose columns (weak-perspective fit of the anthropometric 14-point model).
POSE_FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("pose_yaw", "deg", -90.0, 90.0, "head yaw; > 0: turned towards the subject's left (nose to image right)"),
    FeatureSpec("pose_pitch", "deg", -90.0, 90.0, "head pitch; > 0: head tilted up"),
    FeatureSpec("pose_roll", "deg", -180.0, 180.0, "head roll; > 0: eye line runs down the image from the subject's right eye to the left"),
)

#: Diagnostics (``diag__landmarks__<name>``).
DIAGNOSTICS: tuple[FeatureSpec, ...] = (
    FeatureSpec("interocular_px", "px", 0.0, float("inf"), "inter-ocular distance in image pixels (face resolution)"),
)
POSE_DIAGNOSTICS: tuple[FeatureSpec, ...] = (
    FeatureSpec("pose_rmse", "IOD", 0.0, 0.3, "RMS reprojection error of the pose fit over its 14 points, in IOD units"),
)


def _field(name: str, spec: FeatureSpec) -> pa.Field:
    meta = {
        b"unit": spec.unit.encode(),
        b"range": json.dumps([spec.low, spec.high]).encode(),
        b"description": spec.description.encode(),
    }
    return pa.field(name, pa.float64(), metadata=meta)


class LandmarksExtractor(Extractor):
    """Scale- and rotation-invariant face geometry (and head pose) from the 68 landmarks.

    Config
    ------
    pose : bool, default True
        Add ``landmarks__pose_yaw/pitch/roll`` and ``diag__landmarks__pose_rmse``.
    include_points : bool, default False
        Add the raw 68 points as ``landmarks__points``, a float32 ``[68, 2]`` embedding column
        in original-image pixels ``(x, y)``.
    """

    name = NAME
    version = "1.0.0"
    config_schema = {
        "type": "object",
        "properties": {
            "pose": {
                "type": "boolean",
                "default": True,
                "description": "add head yaw, pitch and roll (degrees) and the pose fit error",
            },
            "include_points": {
                "type": "boolean",
                "default": False,
                "description": "add the raw 68 landmark points as a [68, 2] float32 column",
            },
        },
        "additionalProperties": False,
    }

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self._pose = bool(self.config.get("pose", True))
        self._points = bool(self.config.get("include_points", False))

    def requires(self) -> Requires:
        return Requires(aligned_sizes=(), landmarks=True, original=False)

    def output_schema(self) -> pa.Schema:
        fields = [_field(f"{NAME}__{s.name}", s) for s in FEATURES]
        if self._pose:
            fields += [_field(f"{NAME}__{s.name}", s) for s in POSE_FEATURES]
        if self._points:
            fields.append(
                embedding_field(f"{NAME}__points", [68, 2], "68 iBUG 300-W landmarks (x, y), original-image pixels")
            )
        fields += [_field(f"diag__{NAME}__{s.name}", s) for s in DIAGNOSTICS]
        if self._pose:
            fields += [_field(f"diag__{NAME}__{s.name}", s) for s in POSE_DIAGNOSTICS]
        return pa.schema(fields)

    def extract(self, batch: FaceBatch) -> pa.RecordBatch:
        schema = self.output_schema()
        n = len(batch)
        if n == 0:
            return pa.RecordBatch.from_pylist([], schema=schema)
        points = batch.landmarks()
        columns: dict[str, Any] = {}
        for key, values in landmark_features_batch(points).items():
            columns[f"{NAME}__{key}"] = values
        iod = np.asarray(interocular_distance(points), dtype=np.float64).reshape(n)
        if self._pose:
            pose = head_pose_batch(points)
            columns[f"{NAME}__pose_yaw"] = pose["yaw"]
            columns[f"{NAME}__pose_pitch"] = pose["pitch"]
            columns[f"{NAME}__pose_roll"] = pose["roll"]
            with np.errstate(invalid="ignore", divide="ignore"):
                columns[f"diag__{NAME}__pose_rmse"] = pose["rmse"] / iod
        if self._points:
            columns[f"{NAME}__points"] = embedding_array(points.reshape(n, 68, 2))
        columns[f"diag__{NAME}__interocular_px"] = iod
        # from_pandas: a feature undefined for degenerate landmarks (NaN) is stored as null
        arrays = [
            columns[f.name]
            if isinstance(columns[f.name], pa.Array)
            else pa.array(columns[f.name], type=f.type, from_pandas=True)
            for f in schema
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)


@hookimpl
def facefeat_register(registry) -> None:
    registry.add_extractor(LandmarksExtractor)
