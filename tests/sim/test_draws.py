"""The simulator's compiled draws give what random.Random gives, from the same stream: a
seed's schedule does not depend on which of the two made it."""

from __future__ import annotations

import random

import pytest

from raftkv.sim import draws


@pytest.mark.parametrize("seed", range(20))
def test_choice_and_randint_match_the_library_draw_for_draw(seed: int) -> None:
    ours, library = random.Random(seed), random.Random(seed)
    for size in [1, 2, 3, 5, 7, 8, 9, 31, 32, 33, 1000]:
        items = list(range(size))
        for _ in range(50):
            assert draws.choice(ours, items) == library.choice(items)
            assert draws.randint(ours, -3, size) == library.randint(-3, size)
            # Interleaved with the other draws the simulator makes from the same stream.
            assert ours.random() == library.random()
    assert ours.getstate() == library.getstate()


def test_empty_draws_are_refused_as_the_library_refuses_them() -> None:
    with pytest.raises(IndexError):
        draws.choice(random.Random(1), [])
    with pytest.raises(ValueError):
        draws.randint(random.Random(1), 3, 2)
