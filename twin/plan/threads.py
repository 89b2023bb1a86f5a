"""How many threads a planning process uses: torch's intra-op pool and the BLAS pools that numpy
and scipy each load, set in one place.

A decision's tensors and vectors are small. On more than one thread torch waits on itself
(RuntimeConfig.planning_threads), and scipy's OpenBLAS, which the refinement's L-BFGS-B calls
every few milliseconds, keeps a worker spinning on a second core for as long as decisions come:
measured on a 2-core machine, a planning process burned 1.98 CPU seconds per second of planning
on its one thread, and about 0.09 s/s between decisions, taken from the ingest, the historian and
the servers beside it. With its pool at one thread the same process burns 1.00 s/s and plans
as fast (benchmarks/plan.py, docs/control.md)."""

from __future__ import annotations


def limit_planning_threads(threads: int) -> None:
    """Set torch's intra-op threads and every loaded BLAS library's threads to `threads`, for the
    whole process (a long-running planner such as `twin serve`, and the benchmarks that time
    it)."""
    import scipy.optimize  # noqa: F401  loads scipy's own BLAS, so that the limit reaches it
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads, user_api="blas")
