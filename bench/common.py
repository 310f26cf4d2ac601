"""Shared shape of a benchmark figure, so that ``bench/run.py`` can print and save them all."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Figure:
    """One measured figure, compared with a baseline measured in the same run."""

    name: str  # what was measured, e.g. "file encrypt 256 MiB"
    value: float  # the measured figure
    unit: str  # e.g. "MiB/s", "appends/s", "s"
    baseline_name: str = ""  # e.g. "raw AESGCM on the same buffers" ("" if the target is absolute)
    baseline_value: float | None = None
    target: str = ""  # e.g. "ratio >= 0.75", ">= 5000/s", "<= 10 s"
    passed: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        return self.value / self.baseline_value  # type: ignore[operator]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        return d
