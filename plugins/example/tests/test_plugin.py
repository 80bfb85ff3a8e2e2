"""Tests of the example plugin, runnable on their own: pytest plugins/example/tests"""

import numpy as np
import pyarrow as pa

from facefeat.engine import Face, FaceBatch
from facefeat.engine.registry import Registry
from facefeat_example_plugin.plugin import ColourStats, facefeat_register


def _face(colour):
    img = np.zeros((256, 256, 3), np.uint8)
    img[64:192, 64:192] = colour  # the central region the extractor reads
    return Face(image_id="x", subject_id="s", landmarks=np.zeros((68, 2)), box=(0, 0, 1, 1), aligned={256: img})


def test_registers_and_validates_config():
    registry = Registry()
    facefeat_register(registry)
    ext = registry.create("example_colour", {})
    assert ext.config == {"size": 256, "region": 0.5}


def test_extract_means_of_central_region():
    ext = ColourStats({"size": 256, "region": 0.5})
    out = ext.extract(FaceBatch([_face((10, 20, 30)), _face((200, 100, 0))]))
    assert out.num_rows == 2
    assert out.schema.equals(ext.output_schema())
    assert out.column("example_colour__mean_g").to_pylist() == [20.0, 100.0]
    assert np.allclose(out.column("example_colour__luminance").to_numpy(), [0.299 * 10 + 0.587 * 20 + 0.114 * 30,
                                                                             0.299 * 200 + 0.587 * 100])
    assert isinstance(out, pa.RecordBatch)
