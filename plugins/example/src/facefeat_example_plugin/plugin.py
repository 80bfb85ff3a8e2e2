"""The ``example_colour`` extractor and its registration hook."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from facefeat.engine import Extractor, FaceBatch, Requires, hookimpl

FEATURES = ("mean_r", "mean_g", "mean_b", "luminance")


class ColourStats(Extractor):
    """Mean colour of the central face region of the FFHQ-aligned crop."""

    name = "example_colour"
    version = "0.1.0"
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "size": {"enum": [256, 512, 1024], "default": 256, "description": "aligned crop size"},
            "region": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.5,
                       "description": "side of the central square, as a fraction of the crop"},
        },
    }

    def requires(self) -> Requires:
        return Requires(aligned_sizes=(self.config["size"],), landmarks=True)

    def output_schema(self) -> pa.Schema:
        return pa.schema([pa.field(f"{self.name}__{f}", pa.float64()) for f in FEATURES])

    def extract(self, batch: FaceBatch) -> pa.RecordBatch:
        size = self.config["size"]
        half = int(round(size * self.config["region"] / 2))
        c = size // 2
        crops = batch.aligned(size)[:, c - half:c + half, c - half:c + half, :].astype(np.float64)
        means = crops.mean(axis=(1, 2))  # (B, 3)
        luma = means @ np.array([0.299, 0.587, 0.114])
        columns = [means[:, 0], means[:, 1], means[:, 2], luma]
        return pa.RecordBatch.from_arrays([pa.array(v) for v in columns], schema=self.output_schema())


@hookimpl
def facefeat_register(registry) -> None:
    registry.add_extractor(ColourStats)
