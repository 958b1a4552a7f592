"""Number and table formatting shared by the study sections of docs/validation.md (tables <= 80 columns)."""
from __future__ import annotations

import math


def fmt(x, spec: str) -> str:
    """``x`` formatted with ``spec``; '–' for None / NaN; no sign on zero."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    s = format(x, spec)
    return s.lstrip("-+") if float(s) == 0 else s


def table(header, rows) -> str:
    """A right-aligned Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])
