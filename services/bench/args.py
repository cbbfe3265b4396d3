"""Command-line argument types shared by the benchmarks."""

from __future__ import annotations

import argparse


def positive_ints(value: str) -> list[int]:
    """``"1000,10_000"`` -> ``[1000, 10000]``; argparse shows the error naming the value."""
    try:
        numbers = [int(part.replace("_", "")) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {value!r}") from None
    if not numbers or any(n < 1 for n in numbers):
        raise argparse.ArgumentTypeError(f"expected positive integers: {value!r}")
    return numbers
