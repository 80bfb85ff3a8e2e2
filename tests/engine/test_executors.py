"""Executors on real workers: local processes and a real Dask LocalCluster of 2 worker processes.

No mocks: workers are separate processes, killed for real (SIGKILL) where a test says so.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from facefeat.engine.executors import (
    ENV_WORKER_INDEX,
    ExecutorError,
    build_jobqueue_cluster,
    make_executor,
    resolve_cluster_config,
)
from facefeat.engine.run import ENV_TEST_HANG_AFTER_CHUNKS, ENV_TEST_KILL_WORKER, run_extraction
from facefeat.errors import ConfigError
from tests.engine.test_run import _cohort, _table_rows

pytest.importorskip("distributed", reason="the cluster extra (dask[distributed]) is part of the dev extra")

ROOT = Path(__file__).resolve().parents[2]


# Task functions live at module level: workers import them by name.
def square(x):
    return x * x


def fail_on_three(x):
    if x == 3:
        raise ValueError("three is not allowed")
    return x


def die_once(marker):
    """Kill this worker process the first time any worker runs it; then succeed."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return os.getpid()
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def always_die(_):
    os.kill(os.getpid(), signal.SIGKILL)


def worker_index_env():
    return os.environ.get(ENV_WORKER_INDEX)


def set_env(name, value):
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


# -- local processes ------------------------------------------------------------------------------
def test_local_map_keeps_order_and_reports_failures():
    with make_executor("local") as ex:
        assert ex.map(square, [3, 1, 2]) == [9, 1, 4]
        with pytest.raises(ExecutorError, match=r"1 of 4 task\(s\) failed.*item 2: ValueError: three is not allowed"):
            ex.map(fail_on_three, [1, 2, 3, 4])


@pytest.mark.slow
def test_local_processes_rerun_the_task_of_a_killed_worker(tmp_path):
    marker = tmp_path / "killed"
    with make_executor("local", jobs=2) as ex:
        pids = ex.map(die_once, [str(marker)] * 4)
        assert marker.exists() and all(isinstance(p, int) for p in pids)
        assert set(ex.run_on_workers(worker_index_env).values()) <= {"0", "1"}
        with pytest.raises(ExecutorError, match=r"its worker died 2 time\(s\)"):
            ex.map(always_die, [0], retries=1)


def test_one_gpu_per_worker():
    from facefeat.engine.run import device_for_worker

    assert [device_for_worker("cuda", i, 2) for i in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert device_for_worker("cuda", 3, 1) == "cuda"  # a Slurm job's one visible GPU
    assert device_for_worker("cuda:1", 0, 4) == "cuda:1" and device_for_worker("cpu", 1, 4) == "cpu"
    assert device_for_worker("cuda", None, 4) == "cuda"


def test_unknown_executor_and_bad_local_spec():
    with pytest.raises(ConfigError, match="unknown executor 'lokal'"):
        make_executor("lokal")
    with pytest.raises(ConfigError, match="local:N with N >= 1"):
        make_executor("local:zero")
    with pytest.raises(ConfigError, match="tcp://HOST:PORT"):
        make_executor("tcp://nohost")


# -- cluster config --------------------------------------------------------------------------------
def test_cluster_section_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'cluster.qeue'; allowed keys: account, cores"):
        resolve_cluster_config({"qeue": "gpu", "cores": 4})
    with pytest.raises(ConfigError, match="cluster.walltime"):
        resolve_cluster_config({"walltime": "four hours"})


def test_unknown_cluster_key_stops_a_run_before_any_work(tmp_path, examples_dir):
    cfg = {"input": str(examples_dir), "out": str(tmp_path / "r"), "extractors": ["landmarks"],
           "cluster": {"partition": "gpu"}}
    with pytest.raises(ConfigError, match="'cluster.partition'"):
        run_extraction(cfg, executor="slurm", progress=False)
    assert not (tmp_path / "r").exists()


def test_slurm_job_script_from_the_cluster_section():
    cfg = resolve_cluster_config({"cores": 4, "memory": "16GB", "gpus": 1, "walltime": "02:00:00", "queue": "gpu",
                                  "account": "radonc", "prologue": ["module load cuda/12.1", "source ~/ff/bin/activate"],
                                  "jobs": 3})
    cluster = build_jobqueue_cluster("slurm", cfg)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in ("#SBATCH -p gpu", "#SBATCH -A radonc", "#SBATCH --cpus-per-task=4", "#SBATCH -t 02:00:00",
                 "#SBATCH --gres=gpu:1", "module load cuda/12.1", "export OMP_WAIT_POLICY=PASSIVE",
                 "export OMP_NUM_THREADS=4"):
        assert line in script, line
    assert script.index("module load cuda/12.1") < script.index("distributed.cli.dask_worker")
    assert "--nthreads 1" in script  # one task at a time; the job's cores are its torch threads


def test_jobqueue_kind_without_its_submit_command(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here (nor anywhere on this machine)
    with pytest.raises(ConfigError, match="'sbatch', which is not on PATH"):
        make_executor("slurm", cluster={"cores": 2})


def test_unreachable_scheduler_is_a_clear_error():
    t0 = time.monotonic()
    with pytest.raises(ExecutorError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:9 within 2 s"):
        make_executor("tcp://127.0.0.1:9", timeout=2)
    assert time.monotonic() - t0 < 30


# -- a real LocalCluster of two worker processes ---------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster (2 processes x 1 thread); runs reach it through its tcp:// address."""
    ex = make_executor("local:2")
    ex.client.wait_for_workers(2, timeout=120)
    yield ex
    ex.close()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = _cohort(tmp_path_factory.mktemp("cohort"), 8)
    ref = tmp_path_factory.mktemp("ref")
    run_extraction({"input": str(folder), "out": str(ref), "extractors": ["landmarks", "face_descriptor"],
                    "batch_size": 2, "landmarks": {"include_points": True}}, progress=False)
    return folder, ref


def _config(folder, out):
    return {"input": str(folder), "out": str(out), "extractors": ["landmarks", "face_descriptor"], "batch_size": 2,
            "landmarks": {"include_points": True}}


def _assert_same_tables(a, b):
    for name in ("landmarks", "face_descriptor"):
        ta, tb = _table_rows(Path(a) / f"{name}.parquet"), _table_rows(Path(b) / f"{name}.parquet")
        assert ta.num_rows == 8 and ta.equals(tb), name


@pytest.mark.slow
def test_cluster_map_and_tables_equal_a_local_run(cluster, cohort, tmp_path):
    folder, ref = cohort
    assert cluster.map(square, range(7)) == [i * i for i in range(7)]
    with pytest.raises(ExecutorError, match="item 3: ValueError"):
        cluster.map(fail_on_three, range(5))
    summary = run_extraction(_config(folder, tmp_path), executor=cluster.client.scheduler.address, progress=False)
    assert summary.n_processed == 8 and summary.executor.startswith("tcp://")
    _assert_same_tables(tmp_path, ref)  # bit-equal, landmarks and the dlib descriptor
    assert not list((tmp_path / ".parts").rglob("*.parquet"))


@pytest.mark.slow
def test_cluster_worker_killed_mid_chunk_loses_and_duplicates_nothing(cluster, cohort, tmp_path):
    folder, ref = cohort
    marker = tmp_path / "killed-worker"
    cluster.client.run(set_env, ENV_TEST_KILL_WORKER, str(marker))
    try:
        summary = run_extraction(_config(folder, tmp_path / "out"), executor=cluster.client.scheduler.address,
                                 progress=False)
    finally:
        cluster.client.run(set_env, ENV_TEST_KILL_WORKER, None)
    assert marker.exists()  # a worker did die, after writing one extractor's part of its chunk
    assert summary.n_processed == 8
    _assert_same_tables(tmp_path / "out", ref)
    cluster.client.wait_for_workers(2, timeout=120)  # the nanny restarted it


@pytest.mark.slow
def test_cluster_driver_killed_resumes_from_the_parts(cluster, cohort, tmp_path):
    folder, ref = cohort
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "facefeat.cli", "extract", str(folder), "--out", str(out), "-e",
           "landmarks,face_descriptor", "-s", "landmarks.include_points=true", "--batch-size", "2", "--no-progress",
           "--scheduler", cluster.client.scheduler.address]
    proc = subprocess.Popen(cmd, env={**os.environ, ENV_TEST_HANG_AFTER_CHUNKS: "2"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parts = out / ".parts" / "face_descriptor"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(parts.glob("part-*.parquet"))) < 2 and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, proc.stderr.read().decode()  # blocked by the hook: it cannot have finished
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _wait_idle(cluster)
    n_parts = len(list(parts.glob("part-*.parquet")))
    assert 2 <= n_parts < 4 and not (out / "face_descriptor.parquet").exists()
    summary = run_extraction(_config(folder, out), executor=cluster.client.scheduler.address, progress=False)
    assert summary.n_reused == 2 * n_parts and summary.n_processed == 8 - 2 * n_parts
    _assert_same_tables(out, ref)


def _wait_idle(cluster, timeout=120):
    """Until the scheduler runs no task (a killed driver's tasks may still be finishing)."""
    deadline = time.time() + timeout
    while time.time() < deadline and any(cluster.client.processing().values()):
        time.sleep(0.2)


@pytest.mark.slow
def test_worker_without_a_plugin_the_driver_has_is_refused_before_work(cluster, cohort, tmp_path):
    folder, _ = cohort
    cluster.client.run(set_env, "FACEFEAT_PLUGINS_BLOCK", "face_descriptor")
    try:
        with pytest.raises(ExecutorError, match=r"(?s)2 of 2 worker\(s\).*nothing was computed.*face_descriptor.*"
                                                r"install the same plugins on every worker"):
            run_extraction(_config(folder, tmp_path), executor=cluster.client.scheduler.address, progress=False)
    finally:
        cluster.client.run(set_env, "FACEFEAT_PLUGINS_BLOCK", None)
    assert not list((tmp_path / ".parts").rglob("*.parquet"))


@pytest.mark.slow
def test_run_folder_the_workers_cannot_write_is_refused_before_work(cluster, cohort, tmp_path):
    folder, _ = cohort
    tmp_path.joinpath(".parts").write_text("not a folder")  # what a worker sees on a mount it cannot write
    with pytest.raises(ExecutorError, match=r"(?s)cannot write the run folder .*\.parts.*shared file system"):
        run_extraction(_config(folder, tmp_path), executor=cluster.client.scheduler.address, progress=False)
    assert not list(tmp_path.glob("*.parquet"))
