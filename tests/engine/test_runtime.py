"""facefeat.runtime: settings that must be in place before torch loads, checked in fresh processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Elementwise products whose results are subnormal in float32 (1e-40), large enough that torch
# splits them between its intra-op threads; prints how many stayed non-zero.
PROBE = """
import json, os, sys
configure = sys.argv[1] == "configure"
if configure:
    from facefeat.runtime import configure_runtime
    before = configure_runtime(threads=2)
import torch
if not configure:
    torch.set_num_threads(2)
x = torch.full((4_000_000,), 1e-30)
y = x * 1e-10
print(json.dumps({"nonzero": int((y != 0).sum()), "threads": torch.get_num_threads(),
                  "policy": os.environ.get("OMP_WAIT_POLICY"), "omp_threads": os.environ.get("OMP_NUM_THREADS"),
                  "before": before if configure else None}))
"""


def _run(*args, env=None, code=PROBE):
    env = {**{k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")},
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]), **(env or {})}
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_subnormals_flushed_in_every_intra_op_thread_and_wait_policy_set_before_torch_loads():
    plain = _run("plain")
    # Without facefeat's settings torch's second thread keeps subnormals (set_flush_denormal
    # would reach only the main thread): the probe can see the difference.
    assert plain["nonzero"] > 0 and plain["policy"] is None
    done = _run("configure")
    assert done["nonzero"] == 0
    assert done["threads"] == 2 and done["policy"] == "PASSIVE" and done["omp_threads"] == "2"
    assert done["before"]["flush_denormal"] == "at torch import"


def test_a_users_wait_policy_and_thread_count_are_kept():
    code = ("import json; from facefeat.runtime import configure_runtime; r = configure_runtime(); import torch; "
            "print(json.dumps({'threads': torch.get_num_threads(), 'policy': r['omp_wait_policy']}))")
    got = _run(code=code, env={"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "1"})
    assert got == {"threads": 1, "policy": "ACTIVE"}


@pytest.mark.slow
def test_threads_follow_the_cores_this_process_may_use():
    code = ("import os, json; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
            "from facefeat.runtime import configure_runtime, cores_available, default_threads; "
            "r = configure_runtime(workers=1); import torch; "
            "print(json.dumps({'cores': cores_available(), 'threads': torch.get_num_threads(), "
            "'per2': default_threads(workers=2)}))")
    assert _run(code=code) == {"cores": 1, "threads": 1, "per2": 1}


@pytest.mark.slow
def test_late_call_after_torch_computed_warns_and_still_sets_threads():
    code = ("import json, logging; logging.basicConfig(); import torch; torch.set_num_threads(2); "
            "(torch.ones(1 << 18) * 2).sum(); from facefeat.runtime import configure_runtime; "
            "r = configure_runtime(threads=2); print(json.dumps(r))")
    got = _run(code=code)
    # the pool existed before the call: its second thread cannot be reached, and it says so
    assert got["flush_denormal"] is True and got["flush_checked"] is False and got["omp_wait_policy"] is None
