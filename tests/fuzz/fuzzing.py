"""Shared pieces of the decoder fuzz suite (docs/testing.md, "Fuzzing").

`fuzz` is the settings every property here runs under: `RAFTKV_FUZZ_EXAMPLES` examples
(default 100, enough for CI's one-minute budget for the directory; raise it for a long
run), a deadline that catches a decoder that hangs or allocates what a length field
announces, and the failing example's blob printed for replay.

`mutated(valid)` turns valid encodings into the inputs a damaged disk or a hostile peer
sends: bit flips, truncation, extension, insertion, deletion, splicing of two valid
encodings, overwritten runs and huge length-like words.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("RAFTKV_FUZZ_EXAMPLES", "100"))

fuzz = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=2),
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

T = TypeVar("T")

# Integers at the edges of every fixed width a decoder might hold them in.
EDGE_INTEGERS = [
    0,
    1,
    -1,
    2**7,
    2**8,
    2**15,
    2**16,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**48,
    2**62 - 1,
    2**62,
    2**63 - 1,
    2**63,
    2**64 - 1,
    -(2**31),
    -(2**63),
]
edge_integers = st.sampled_from(EDGE_INTEGERS) | st.integers(
    min_value=-(2**63), max_value=2**64 - 1
)

# Text of every kind, lone surrogates excluded (they cannot be encoded as UTF-8).
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)

# Words that, read as a length or a count, announce far more than any input holds.
_HUGE_WORDS = [
    struct.pack(fmt, value) for value in (2**31, 2**31 - 1, 2**32 - 1) for fmt in (">I", "<I")
] + [
    struct.pack("<Q", 2**63 - 1),
    struct.pack(">Q", 2**64 - 1),
    b"\xdd\xff\xff\xff\xff",
    b"\xdf\x7f\xff\xff\xff",
    b"\xc6\xff\xff\xff\xff",
]


def deep_msgpack(depth: int) -> bytes:
    """An array nested `depth` deep (MessagePack fixarrays of one element)."""
    return b"\x91" * depth + b"\x00"


def deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding damaged by one to four mutations (or, at times, another one spliced in)."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(
            st.sampled_from(
                ["flip", "truncate", "extend", "insert", "delete", "splice", "overwrite", "huge"]
            )
        )
        position = draw(st.integers(min_value=0, max_value=len(data)))
        if kind == "flip" and data:
            at = position % len(data)
            data[at] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif kind == "truncate":
            del data[position:]
        elif kind == "extend":
            data += draw(st.binary(min_size=1, max_size=32))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[position : position + draw(st.integers(min_value=1, max_value=16))]
        elif kind == "splice":
            other = draw(valid)
            cut = draw(st.integers(min_value=0, max_value=len(other)))
            data = data[:position] + bytearray(other[cut:])
        elif kind == "overwrite":
            run = draw(st.binary(min_size=1, max_size=8))
            data[position : position + len(run)] = run
        else:
            word = draw(st.sampled_from(_HUGE_WORDS))
            data[position : position + len(word)] = word
    return bytes(data)


def hostile(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, mutated valid encodings, and the valid encodings themselves."""
    return st.one_of(st.binary(max_size=200), mutated(valid), valid)


def raises_only(
    function: Callable[..., T],
    allowed: type[BaseException] | tuple[type[BaseException], ...],
    *args: Any,
) -> T | None:
    """Call `function`; None if it raised one of `allowed`, its result otherwise. Any other
    exception propagates and fails the property."""
    try:
        return function(*args)
    except allowed:
        return None
