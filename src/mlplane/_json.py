"""JSON conventions shared by the server and the HTTP transport.

JSON has no NaN or infinity; metric values that are not finite travel as the
strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``.
"""

from __future__ import annotations

import math
from typing import Any

from mlplane.errors import InvalidInput

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def float_out(value: float) -> float | str:
    if type(value) is not float:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"metric value {value!r} is not a number") from None
    if value - value == 0:  # finite
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def float_in(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, str):
        found = _NONFINITE.get(value)
        return found if found is not None else float(value)
    return float(value)
