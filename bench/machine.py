"""What the benchmark runs on: CPU, BLAS, and the machine's peak throughput, for context."""

import os
import platform
from pathlib import Path

import numpy as np

from bench.measure import seconds


def machine(quick):
    from threadpoolctl import threadpool_info

    blas_keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer", "filepath")
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": [{k: info.get(k) for k in blas_keys} for info in threadpool_info() if info["user_api"] == "blas"],
        "environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))},
        # --quick: smaller, for context only (still past the caches; the product still BLAS-bound).
        "peak_sgemm_gflops": peak_sgemm_gflops(n=1024 if quick else 2048, repeats=2 if quick else 3),
        "memory_bandwidth_gbs": memory_bandwidth_gbs(megabytes=128 if quick else 256, repeats=3 if quick else 5),
    }


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_sgemm_gflops(n=2048, repeats=3):
    """Best float32 throughput of an n x n matrix product on every BLAS thread: ``2n³ / t``."""
    rng = np.random.default_rng(0)
    A, B = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    C = np.empty_like(A)
    np.matmul(A, B, out=C)
    return 2 * n**3 / min(seconds(np.matmul, A, B, C) for _ in range(repeats)) / 1e9


def memory_bandwidth_gbs(megabytes=256, repeats=5):
    """Best copy rate between two arrays far larger than the caches: bytes read + written."""
    source = np.ones(megabytes << 18, dtype=np.float32)
    target = np.empty_like(source)
    np.copyto(target, source)
    return 2 * source.nbytes / min(seconds(np.copyto, target, source) for _ in range(repeats)) / 1e9
