"""Addresses from outside (addresses.py): a handshake's `peer_address`, peers.json, the
`--peers`/`--cluster` lists and RAFTKV_* variables. Any text parses or raises
`AddressError` — the only error the handshake code catches — and parsed ports are
0..65535 written in ASCII digits; formatted addresses parse back."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from raftkv.addresses import AddressError, format_address, parse_address_list, parse_host_port

from .fuzzing import fuzz, raises_only

address_text = st.one_of(
    st.text(max_size=30),
    st.tuples(
        st.sampled_from(["h", "10.0.0.2", "[::1]", "", "a:b"]),
        st.sampled_from([":", "=", ""]),
        st.text("0123456789\u00b2\u0663", max_size=6)
        | st.sampled_from(["9" * 5000, "65536", "-1"]),
    ).map("".join),
)


@fuzz
@given(text=address_text)
@example(text="h:\u00b2")
@example(text="h:" + "9" * 5000)
@example(text="h:\u0663")
def test_any_host_port_parses_or_raises_address_error(text: str) -> None:
    parsed = raises_only(parse_host_port, AddressError, text)
    if parsed is not None:
        _host, port = parsed
        assert 0 <= port <= 65535
        assert text.strip().rpartition(":")[2].isascii()


@fuzz
@given(
    text=st.lists(address_text | st.text("0123456789,=\u00b2:h", max_size=8), max_size=4).map(
        ",".join
    )
)
@example(text="\u00b2")
@example(text="9" * 5000)
@example(text="2=h:\u00b2")
def test_any_address_list_parses_or_raises_address_error(text: str) -> None:
    for client_ports in (True, False):
        with contextlib.suppress(AddressError):
            parse_address_list(text, client_ports=client_ports)


@fuzz
@given(host=st.sampled_from(["h", "10.0.0.2", "::1", "fe80::1"]), port=st.integers(0, 65535))
def test_formatted_addresses_parse_back(host: str, port: int) -> None:
    assert parse_host_port(format_address((host, port))) == (host, port)


@pytest.mark.parametrize("text", ["h:\u0663", "h:\u00b2", "h:" + "9" * 5000])
def test_ports_in_other_digits_are_refused(text: str) -> None:
    with pytest.raises(AddressError):
        parse_host_port(text)
