"""Argument types for the command-line tools: a number flag is refused by argparse, naming the
flag, the value and what is allowed, when it is not a number or lies outside its range.

    parser.add_argument("--epochs", type=positive_int, default=10)

``tests/test_tool_flags.py`` walks every tool's parser: each int or float flag must use one of
these types, and each is probed with a word and with a value out of its range. Standard library
only.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


class Bounded:
    """An argparse ``type``: text -> int or float, within [minimum, maximum] and > above."""

    def __init__(
        self,
        kind: type,
        minimum: float | None = None,
        maximum: float | None = None,
        above: float | None = None,
    ):
        self.kind, self.minimum, self.maximum, self.above = kind, minimum, maximum, above
        self.__name__ = self.describe()  # argparse names the type in "invalid <type> value"

    def describe(self) -> str:
        """What is allowed, e.g. "an integer >= 1"."""
        text = "an integer" if self.kind is int else "a number"
        if self.minimum is not None and self.maximum is not None:
            return f"{text} in [{self.minimum}, {self.maximum}]"
        if self.minimum is not None:
            return f"{text} >= {self.minimum}"
        if self.above is not None:
            return f"{text} > {self.above}"
        return text

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.describe()}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text} is not finite; give {self.describe()}")
        if (
            (self.minimum is not None and value < self.minimum)
            or (self.maximum is not None and value > self.maximum)
            or (self.above is not None and value <= self.above)
        ):
            raise argparse.ArgumentTypeError(f"{text} is out of range; give {self.describe()}")
        return value

    def out_of_range(self) -> str | None:
        """A value this type refuses for its range (for the probes), or None."""
        if self.minimum is not None:
            return str(self.kind(self.minimum - 1))
        if self.above is not None:
            return str(self.kind(self.above))
        if self.maximum is not None:
            return str(self.kind(self.maximum + 1))
        return None


positive_int: Callable[[str], int] = Bounded(int, minimum=1)
non_negative_int: Callable[[str], int] = Bounded(int, minimum=0)
any_int: Callable[[str], int] = Bounded(int)
positive_float: Callable[[str], float] = Bounded(float, above=0)
non_negative_float: Callable[[str], float] = Bounded(float, minimum=0)
unit_float: Callable[[str], float] = Bounded(float, minimum=0, maximum=1)
