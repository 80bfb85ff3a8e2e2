"""The machine line every benchmark prints: CPU model, torch threads, load average.

Imported by the scripts in this folder (``python benchmarks/bench_x.py`` puts it on the path).
"""

from __future__ import annotations

import platform


def machine() -> str:
    """``"<cpu model>; torch <version>, <n> thread(s); load avg <1-min>"``."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/loadavg") as fh:
            load = fh.read().split()[0]
    except OSError:
        load = "n/a"
    return f"{cpu}; torch {torch.__version__}, {torch.get_num_threads()} thread(s); load avg {load}"
