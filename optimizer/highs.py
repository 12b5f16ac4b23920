"""Solving a compiled cvxpy problem with one persistent HiGHS instance.

cvxpy compiles the problem once (DPP) and, per solve, hands back the LP data through its
documented ``get_problem_data`` / ``unpack_results`` pair. Between those two calls this module
runs HiGHS itself instead of cvxpy's interface, which builds two new ``Highs`` objects on every
call: a persistent instance costs nothing to set up and can start from the previous optimal
basis (the problem's structure never changes between re-plans, only its numbers).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import cvxpy as cp
import highspy
import numpy as np

_announced = False  # HiGHS prints its banner once per process, at the first construction


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Standard output (fd 1) sent to /dev/null: the HiGHS constructor prints its copyright
    banner from C++ before ``output_flag`` can be set, into every CLI run's output."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _new_highs() -> Any:
    global _announced  # noqa: PLW0603 - once per process, as HiGHS itself does
    if _announced:
        return highspy.Highs()
    with _quiet_stdout():
        highs = highspy.Highs()
    _announced = True
    return highs


class HighsRunner:
    """Re-solves one cvxpy problem; ``warm_start`` reuses the last optimal basis."""

    def __init__(self, *, warm_start: bool = True, time_limit_s: float | None = None) -> None:
        self.warm_start = warm_start
        self._highs = _new_highs()
        self._highs.setOptionValue("output_flag", False)
        if time_limit_s is not None:
            self._highs.setOptionValue("time_limit", float(time_limit_s))
        self._basis: Any = None
        self._shape: tuple[int, int] | None = None

    def solve(self, problem: cp.Problem) -> float:
        """Solve ``problem`` in place (values, duals, status); return HiGHS's own run time (s)."""
        data, chain, inverse_data = problem.get_problem_data(cp.HIGHS)
        results = self._run(data)
        problem.unpack_results(results, chain, inverse_data)
        run_time: float = results["run_time"]
        return run_time

    def _run(self, data: dict[str, Any]) -> dict[str, Any]:
        inf = highspy.kHighsInf
        a_matrix = data["A"].tocsc()
        n_rows, n_cols = a_matrix.shape
        n_eq = data["dims"].zero
        lower, upper = data.get("lower_bounds"), data.get("upper_bounds")
        # cvxpy's conic form is A x (+ s) = b: the first rows are equalities, the rest A x <= b.
        row_upper = np.asarray(data["b"], dtype=np.float64)
        row_lower = np.concatenate([row_upper[:n_eq], np.full(n_rows - n_eq, -inf)])
        highs = self._highs
        # The array overload copies numpy buffers straight into HiGHS (int32 indices, column-wise
        # matrix, minimise); setting HighsLp fields one by one converts element by element.
        highs.passModel(
            n_cols,
            n_rows,
            a_matrix.nnz,
            int(highspy.MatrixFormat.kColwise),
            int(highspy.ObjSense.kMinimize),
            0.0,
            np.asarray(data["c"], dtype=np.float64),
            np.full(n_cols, -inf) if lower is None else np.asarray(lower, dtype=np.float64),
            np.full(n_cols, inf) if upper is None else np.asarray(upper, dtype=np.float64),
            row_lower,
            row_upper,
            a_matrix.indptr.astype(np.int32),
            a_matrix.indices.astype(np.int32),
            a_matrix.data.astype(np.float64, copy=False),
            np.zeros(n_cols, dtype=np.int32),  # all continuous (the overload needs one per column)
        )
        if self.warm_start and self._basis is not None and self._shape == (n_rows, n_cols):
            highs.setBasis(self._basis)
        before = highs.getRunTime()
        highs.run()
        status = highs.getModelStatus()
        results = {
            "solution": highs.getSolution(),
            "info": highs.getInfo(),
            "model_status": status.name,
            "run_time": highs.getRunTime() - before,  # the clock is cumulative per instance
        }
        if status == highspy.HighsModelStatus.kInfeasible:
            results["dual_ray"] = highs.getDualRay()
        if status == highspy.HighsModelStatus.kOptimal:
            self._basis, self._shape = highs.getBasis(), (n_rows, n_cols)
        else:
            self._basis = None
        return results
