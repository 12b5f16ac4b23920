"""Assigning parameter values on the hot path.

cvxpy validates every ``Parameter.value`` assignment (sign attributes through numpy/scipy checks),
which costs tens of microseconds per parameter and re-plan; the fleet model assigns a dozen per
solve from a snapshot that was validated once, up front. ``set_value`` keeps the one check that
matters for correctness (no negative value in a nonnegative parameter, which would break DPP's
sign assumptions) and writes the value directly.
"""

from __future__ import annotations

from typing import Any

import cvxpy as cp
import numpy as np

from optimizer.errors import SpecError


def set_value(parameter: cp.Parameter, value: Any) -> None:
    """Assign ``value`` (shape-checked; nonnegative where the parameter says so)."""
    array = np.asarray(value, dtype=float)
    if array.shape != parameter.shape:
        raise SpecError(parameter.name(), f"expected shape {parameter.shape}, got {array.shape}")
    if parameter.is_nonneg() and (array < 0).any():
        raise SpecError(parameter.name(), "must be >= 0")
    parameter._value = array  # skip cvxpy re-validation (see the module docstring)
