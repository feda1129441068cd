"""One place that sets how many threads the native libraries of a worker may start.

A ``curate build`` worker runs NumPy/SciPy (BLAS, OpenMP), SimpleITK, blosc2
and, where a learned model is installed, torch.  Each of them starts one
thread per core by default, so *N* worker processes on *N* cores would run up
to *N²* busy threads: the build then spends its time switching between them
(measured: two workers on two cores were 1.13x one worker, with a quarter of
their CPU in the kernel).  Every worker therefore gives each library its share
of the cores, once, before its first image, through :func:`limit_threads`;
stages read the share with :func:`thread_budget` and never change global
thread state themselves.

The mechanism is threadpoolctl (BLAS and OpenMP pools already loaded) plus
each library's own switch (SimpleITK's global default, ``blosc2.set_nthreads``,
``torch.set_num_threads`` when torch is already imported) and the usual
environment variables for libraries loaded later and for child processes.
"""

from __future__ import annotations

import os
import sys

#: Environment variables read by thread pools that are not loaded yet (and by child processes).
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                   "NUMEXPR_NUM_THREADS", "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                   "BLOSC_NTHREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")

_applied: int | None = None


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS says, else ``os.cpu_count``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def worker_share(workers: int, threads_per_worker: int = 0) -> int:
    """Threads each of ``workers`` processes may use: the setting, or the cores split evenly.

    Examples
    --------
    >>> worker_share(4, threads_per_worker=3)
    3
    >>> worker_share(10**6) >= 1
    True
    """
    if threads_per_worker > 0:
        return threads_per_worker
    return max(1, available_cores() // max(1, workers))


def limit_threads(threads: int) -> int:
    """Limit every native thread pool of this process to ``threads``; idempotent.

    Returns the limit in force.  Called by each worker before its first image
    (and by the in-process path); calling it again with the same number is free.
    """
    global _applied
    threads = max(1, int(threads))
    if _applied == threads:
        return threads
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: the environment variables still reach pools loaded later
        pass
    else:
        threadpool_limits(limits=threads)  # BLAS and OpenMP pools, for the life of the process
    _set_library_threads(threads)
    _applied = threads
    return threads


def _set_library_threads(threads: int) -> None:
    """Each library's own switch; torch only when something already imported it."""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    try:
        import blosc2
    except ImportError:
        pass
    else:
        blosc2.set_nthreads(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def thread_budget() -> int:
    """The limit :func:`limit_threads` set in this process (all cores before it was called)."""
    return _applied if _applied is not None else available_cores()


__all__ = ["THREAD_ENV_VARS", "available_cores", "limit_threads", "thread_budget", "worker_share"]
