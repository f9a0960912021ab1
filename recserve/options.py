"""What both halves of `recserve` share about their options: numbers with a range, and the error of a command
line that makes no sense. Standard library only (the serving image has no torch, and parsing imports none).

A numeric option's type is a `Number`, which carries its range: a value outside it (`recommend --k -5`,
`train --epochs 0`) is refused by the parser in one line naming the option, as the HTTP API refuses `k: 0`,
instead of running and writing something nobody asked for. The range lives on the type so that a test can
walk every command's numeric options from the parser itself (tests/test_cli.py).
"""
from __future__ import annotations

import argparse
import math


class UsageError(Exception):
    """Options that cannot work together, found when the command runs; reported in one line, exit status 2."""


class Number:
    """An argparse type: an int or a finite float, at least `low` (or above `above`) and at most `high`."""

    def __init__(self, kind: type = int, low: float | None = None, high: float | None = None,
                 above: float | None = None):
        self.kind, self.low, self.high, self.above = kind, low, high, above
        self.__name__ = "whole number" if kind is int else "number"  # argparse names the type by it

    def describe(self) -> str:
        what = "a whole number" if self.kind is int else "a number"
        limits = [f"at least {self.low}" if self.low is not None else "",
                  f"above {self.above}" if self.above is not None else "",
                  f"at most {self.high}" if self.high is not None else ""]
        return " ".join([what, " and ".join(part for part in limits if part)]).strip()

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not self.contains(value):
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {text!r}")
        return value

    def contains(self, value: float) -> bool:
        return ((self.low is None or value >= self.low) and (self.above is None or value > self.above)
                and (self.high is None or value <= self.high))


COUNT = Number(int, low=1)          # epochs, batch sizes, k, processes...
NON_NEGATIVE = Number(int, low=0)   # seeds, k-core
POSITIVE = Number(float, above=0)   # CPUs, seconds
NON_NEGATIVE_FLOAT = Number(float, low=0)  # learning rates: 0 trains nothing, which a test of early stopping wants
FINITE = Number(float)              # a threshold of any sign (ratings)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line naming the way out (`--help`), not the usage block: the
    same shape as every other error of the command (recserve/cli.py). Sub-commands inherit it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
