"""A compute device lost in the middle of an extraction: the run stops with a DeviceError that
says what is kept, the finished batches stay as parts, and a re-run finishes only the rest and
equals an uninterrupted run. Bad input in the same place stays a per-row ``error`` status."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from facefeat.cli import main
from facefeat.engine.extractor import Extractor, Requires
from facefeat.engine.registry import Registry
from facefeat.engine.run import PARTS_DIR, run_extraction
from facefeat.errors import DeviceError
from tests.conftest import DATA


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Five small real photos (256 px FFHQ crops of different people): quick to detect and align."""
    import shutil

    folder = tmp_path_factory.mktemp("photos")
    for path in sorted((DATA / "ffhq_align").glob("*_f00_256.png"))[:5]:
        shutil.copy(path, folder / path.name)
    return folder


class _Brightness(Extractor):
    """Mean brightness of the 32 px aligned crop; fails the way it is told to from the ``calls``-th batch on."""

    name = "brightness"
    version = "1"
    fail_from: int | None = None  # batch number (0-based) from which extract() raises
    failure: BaseException = torch.AcceleratorError("CUDA error: unspecified launch failure")
    calls = 0

    def requires(self) -> Requires:
        return Requires(aligned_sizes=(32,))

    def output_schema(self) -> pa.Schema:
        return pa.schema([pa.field("brightness__mean", pa.float64())])

    def extract(self, batch):
        cls = type(self)
        cls.calls += 1
        if cls.fail_from is not None and cls.calls > cls.fail_from:
            raise cls.failure
        values = [float(f.aligned[32].mean()) for f in batch]
        return pa.RecordBatch.from_arrays([pa.array(values, pa.float64())], schema=self.output_schema())


def _registry(fail_from=None, failure=_Brightness.failure) -> Registry:
    _Brightness.fail_from, _Brightness.failure, _Brightness.calls = fail_from, failure, 0
    registry = Registry()
    registry.add_extractor(_Brightness)
    return registry


def _config(photos, out):
    return {"input": str(photos), "out": str(out), "extractors": ["brightness"], "batch_size": 2}


def test_lost_device_stops_the_run_keeps_parts_and_resumes(photos, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(DeviceError, match=r"^extractor 'brightness': the compute device failed \(AcceleratorError: "
                                          r"CUDA error: unspecified launch failure\); the batches finished before it are "
                                          r"kept in OUT/.parts; re-run the same command to resume"):
        run_extraction(_config(photos, out), registry=_registry(fail_from=1), progress=False)
    parts = list((out / PARTS_DIR / "brightness").glob("part-*.parquet"))
    assert len(parts) == 1  # the first batch, intact; nothing of the failed one
    kept = pq.read_table(parts[0]).select(["image_id", "status", "brightness__mean"])
    assert kept.num_rows == 2 and kept.column("status").to_pylist() == ["ok", "ok"]
    assert not (out / "brightness.parquet").exists()

    resumed = run_extraction(_config(photos, out), registry=_registry(), progress=False)  # the device works again
    assert (resumed.n_reused, resumed.n_processed) == (2, 3)
    got = pq.read_table(resumed.tables["brightness"])
    assert got.column("status").to_pylist() == ["ok"] * 5 and got.column("error").null_count == 5
    assert got.select(kept.column_names).slice(0, 2).equals(kept)  # the kept rows, in input order
    means = got.column("brightness__mean").to_pylist()
    assert all(0 < m < 255 for m in means) and len(set(means)) == 5
    assert _Brightness.calls == 2  # the resumed run computed only the 3 missing images (2 batches)


def test_an_ordinary_exception_stays_a_row_status(photos, tmp_path):
    summary = run_extraction(_config(photos, tmp_path), registry=_registry(fail_from=1, failure=ValueError("crop too small")),
                             progress=False)
    table = pq.read_table(summary.tables["brightness"]).to_pydict()
    errors = [e for s, e in zip(table["status"], table["error"]) if s == "error"]
    assert errors == ["extractor brightness failed: ValueError: crop too small"] * 3  # batches 2 and 3
    assert summary.status_counts["ok"] == 2  # the first batch


def test_the_cli_reports_a_lost_device_without_a_traceback(photos, tmp_path, monkeypatch, capsys):
    import facefeat.engine.run as run_module

    registry = _registry(fail_from=0)
    monkeypatch.setattr(run_module, "load_registry", lambda: registry)
    rc = main(["extract", str(photos), "--out", str(tmp_path), "-e", "brightness", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("facefeat extract: error: extractor 'brightness': the compute device failed")
    assert "re-run the same command to resume" in err and "Traceback" not in err


def test_run_extraction_from_python_checks_devices_before_any_work(no_gpu, photos, tmp_path):
    from facefeat.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^device cuda: this torch .* available on this machine: cpu$"):
        run_extraction({**_config(photos, tmp_path / "a"), "device": "cuda"}, registry=_registry(), progress=False)
    assert not (tmp_path / "a").exists() and _Brightness.calls == 0
