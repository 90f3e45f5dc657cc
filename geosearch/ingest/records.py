"""The record that travels through the ingestion stages, and the verdicts on it."""

from __future__ import annotations

from dataclasses import dataclass, field


class Rejected(Exception):  # noqa: N818 - a verdict, not an error condition
    """A stage's verdict that a row cannot be loaded; ``code`` is machine-readable."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class Repair:
    """One change the pipeline made to a row, with a machine-readable code."""

    code: str
    detail: str


@dataclass
class Record:
    """One feed row as it moves through the stages.

    ``raw`` holds the decoded text fields; ``numbers`` the fields a typed feed (GeoJSON,
    GeoParquet) gave as numbers, kept as numbers so that no value goes through text. The
    typed fields are filled by normalise, validate and geocode. ``repairs`` lists every
    change made on the way.
    """

    row: int
    raw: dict[str, str]
    numbers: dict[str, float] = field(default_factory=dict)
    repairs: list[Repair] = field(default_factory=list)
    id: str = ""
    name: str = ""
    address: str = ""
    city: str = ""
    postcode: str | None = None
    country: str = ""
    lat: float | None = None
    lon: float | None = None
    amenities: tuple[str, ...] = ()
    capacity: int | None = None
    price_day: float | None = None
    currency: str | None = None
    status: str = "active"
    geocode_precision: str = "input"
    cells: dict[int, str] = field(default_factory=dict)

    def position(self) -> tuple[float, float]:
        """(lat, lon) of a row that has been located (ValueError before)."""
        if self.lat is None or self.lon is None:
            raise ValueError(f"row {self.row} has no position yet")
        return self.lat, self.lon

    def repair(self, code: str, detail: str) -> None:
        """Record a change made to this row."""
        self.repairs.append(Repair(code, detail))
