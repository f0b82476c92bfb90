"""The run record schema every reader checks a record against (``store.read_valid``).

It holds what the readers rely on (who the run is, its status, its metrics), not every field a run
writes: records of older versions stay readable, and extra fields are allowed. A record that fails is
not a result: readers skip it with a warning naming its file, and the resume logic runs it again.
"""
from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

Name = Field(min_length=1)
MetricValue = StrictFloat | StrictInt | StrictStr | None  # NaN/inf are stored as strings ('nan')


class Metrics(BaseModel):
    model_config = ConfigDict(extra="allow")

    val: dict[str, MetricValue] = Field(default_factory=dict)
    test: dict[str, MetricValue] = Field(default_factory=dict)


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: StrictStr = Name
    domain: StrictStr = Name
    dataset: StrictStr = Name
    model: StrictStr = Name
    method: StrictStr = Name
    scale: StrictStr = Name
    seed: StrictInt = Field(ge=0)
    status: Literal["ok", "diverged", "timeout", "error"]
    error: StrictStr | None = None
    metrics: Metrics
    primary_metric: StrictStr = Name
    higher_is_better: StrictBool = True
    hparams: dict[str, Any] = Field(default_factory=dict)
    overrides: dict[str, Any] = Field(default_factory=dict)
    data: StrictStr | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)
    timings: dict[str, Any] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ok_has_its_result(self) -> "RunRecord":
        # an 'ok' record is a result: it must carry the number the tables and the gate read
        if self.status == "ok":
            value = self.metrics.test.get(self.primary_metric)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"status ok but no finite test {self.primary_metric}")
        return self


def problem(record: Any) -> str | None:
    """Why ``record`` is not a valid run record, in one line (None when it is)."""
    from pydantic import ValidationError

    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    try:
        RunRecord.model_validate(record)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"]))
        return f"{where + ': ' if where else ''}{first['msg']}"
    return None
