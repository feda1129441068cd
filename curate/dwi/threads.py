"""Thread control for the DWI chain.

The chain parallelises itself (patch batches, slice chunks and volumes on
``DwiConfig.threads`` threads, ITK's registration threads).  BLAS/LAPACK
threads on top of that only oversubscribe the cores: the matrices here are
small (65 x 65 covariances, 7-parameter tensor fits), and under load an
OpenBLAS thread pool that spins while waiting made dipy's ``mppca`` more than
ten times slower in our measurements.  So the chain runs with one BLAS thread.
"""

from __future__ import annotations

import contextlib
from typing import Any


def one_blas_thread() -> Any:
    """Context manager limiting BLAS/LAPACK to one thread (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it BLAS keeps its own setting
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
