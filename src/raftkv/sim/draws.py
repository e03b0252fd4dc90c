"""The simulator's frequent random draws, compiled (setup.py): `choice` and `randint` give
exactly what `random.Random.choice` and `randint` give, consuming the generator the same
way, so a seed replays as before. Those methods are interpreted Python (random.py, three
calls deep) and ran tens of thousands of times per seed.

CPython's algorithm (the same since 3.2): for a bound n, draw `getrandbits(n.bit_length())`
until the number is below n. tests/sim/test_draws.py checks it against the library.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def below(rng: random.Random, n: int) -> int:
    """A uniform integer in [0, n), n > 0 (Random._randbelow)."""
    bits = n.bit_length()
    drawn = rng.getrandbits(bits)
    while drawn >= n:
        drawn = rng.getrandbits(bits)
    return drawn


def choice(rng: random.Random, items: Sequence[T]) -> T:
    """`rng.choice(items)`."""
    if not len(items):
        raise IndexError("Cannot choose from an empty sequence")
    return items[below(rng, len(items))]


def randint(rng: random.Random, low: int, high: int) -> int:
    """`rng.randint(low, high)`: both ends included."""
    width = high + 1 - low
    if width <= 0:
        raise ValueError(f"empty range for randint({low}, {high})")
    return low + below(rng, width)
