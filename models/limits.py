"""What a settable hyperparameter may hold, declared next to the config it limits (a Recipe's `limits`).

Torch-free: `recserve train --set` and `--config` check values before any data is read or torch imported.
A limit only refuses values that are meaningless (a dropout of 1, no hidden units), not ones that are
merely unusual; the type itself is checked from the dataclass annotation (training/settings.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


class SettingError(ValueError):
    """A setting that cannot be used: one line naming the field and what it accepts."""


@dataclass(frozen=True)
class Range:
    """A number within [low, high] (either side open, either bound optional)."""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def problem(self, value) -> str | None:
        if value is None:
            return None
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, float) and math.isnan(v):
                return f"must be a number in {self}, got nan"
            too_low = self.low is not None and (v <= self.low if self.low_open else v < self.low)
            too_high = self.high is not None and (v >= self.high if self.high_open else v > self.high)
            if too_low or too_high:
                return f"must be {'in ' if self.low is not None and self.high is not None else ''}{self}, got {value!r}"
        return None

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}" if self.low is not None else "any number"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


@dataclass(frozen=True)
class OneOf:
    """One of a few named values."""
    choices: tuple

    def problem(self, value) -> str | None:
        return None if value in self.choices else f"must be one of {', '.join(map(str, self.choices))}; got {value!r}"


@dataclass(frozen=True)
class NonEmpty:
    """A list with at least one entry, or None where that means "the data decides" (GRU4RecF's features: every
    token field of the .item file)."""

    def problem(self, value) -> str | None:
        return None if value is None or value else "must name at least one"


AT_LEAST_1 = Range(1)
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, low_open=True)
PROBABILITY = Range(0, 1, high_open=True)        # dropout, mask shares: 1 would drop or mask everything
SHARE = Range(0, 1)                               # a share of samples, both ends meaningful
NON_EMPTY = NonEmpty()
TRAIN_MODES = OneOf(("prefix", "window"))         # sequential models: see training/data/sequences.py


def divides(field: str, into: str):
    """A check on a model section: `field` must divide `into` (attention heads into the hidden size)."""
    def check(values: dict) -> str | None:
        a, b = values.get(field), values.get(into)
        if isinstance(a, int) and isinstance(b, int) and a >= 1 and b % a:
            return f"model.{field}: must divide model.{into} ({b}); got {a}"
        return None
    return check
