"""Reading a client request (SPEC §3): the API's errors, and the validation of keys,
queries, bodies, numbers, sessions, ranges and transactions. Every check raises one of the
errors here, which `http_api.ClientApi` turns into the JSON error body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from raftkv.kv.ranges import KeyRange, key_after_token, page_token
from raftkv.kv.store import RangePage
from raftkv.kv.txn import BRANCH_OPS, COMPARE_OPS, COMPARE_TARGETS, Txn, well_typed
from raftkv.server.api_errors import BadRequest, TooLarge
from raftkv.server.http_server import Request
from raftkv.server.options import KEY_BYTES_MAX

CONSISTENCY_LEVELS = ("linearizable", "lease", "stale")
# The largest number the API takes (seq, after_index, index, member ids): commands and peer
# messages carry them as 64-bit MessagePack integers; anything larger is a 400, not a 500.
NUMBER_MAX = (1 << 63) - 1
KV_PREFIX = "/v1/kv/"
# Compares and operations of one transaction together: one entry, applied in one go on the
# loop, so bounded like a page of a range.
TXN_OPS_MAX = 128
# Keys a range answers per page: by default, and at most (`limit`).
RANGE_LIMIT_DEFAULT = 1000
RANGE_LIMIT_MAX = 10_000  # the clients know it too (client/limits.py)


json_decode = msgspec.json.Decoder().decode


# --- validation ---------------------------------------------------------------------------
def key_of(request: Request) -> str:
    key = request.path[len(KV_PREFIX) :]
    if not key or len(key.encode("utf-8")) > KEY_BYTES_MAX:
        raise BadRequest(f"keys are 1 to {KEY_BYTES_MAX} bytes of UTF-8")
    return key


def consistency_of(request: Request) -> str:
    consistency = request.query.get("consistency", "linearizable")
    if consistency not in CONSISTENCY_LEVELS:
        raise BadRequest(f"consistency is one of {', '.join(CONSISTENCY_LEVELS)}")
    return consistency


def checked_key(value: str, name: str) -> str:
    """A key (or a range bound, a key too): 1 to KEY_BYTES_MAX bytes of UTF-8."""
    if not value or len(value.encode("utf-8", errors="surrogatepass")) > KEY_BYTES_MAX:
        raise BadRequest(f"{name!r} is a key: 1 to {KEY_BYTES_MAX} bytes of UTF-8")
    return value


def range_bound(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name)
    return None if value is None else checked_key(value, name)


def key_range_of(query: Mapping[str, str]) -> KeyRange | None:
    """The range a query names: `prefix`, or `start` and/or `end`; None when neither."""
    prefix, start, end = (range_bound(query, name) for name in ("prefix", "start", "end"))
    if prefix is not None:
        if start is not None or end is not None:
            raise BadRequest("give 'prefix' or 'start'/'end', not both")
        return KeyRange.prefix(prefix)
    if start is None and end is None:
        return None
    return KeyRange(start or "", end)


def watch_request_of(query: Mapping[str, str]) -> tuple[KeyRange, int | None, bool]:
    """`GET /v1/watch`: the range (`key`, `prefix`, or `start`/`end`; neither: every key),
    `from_index` (None: from the applied index) and `prev`."""
    key = range_bound(query, "key")
    key_range = key_range_of(query)
    if key is not None:
        if key_range is not None:
            raise BadRequest("give 'key', or 'prefix', or 'start'/'end': one of them")
        key_range = KeyRange(key, key + "\x00")  # the key alone: the next string after it
    raw = query.get("from_index")
    from_index = None if raw is None else number_of(raw)
    if raw is not None and from_index is None:
        raise BadRequest(f"'from_index' must be an integer from 0 to {NUMBER_MAX}")
    return key_range or KeyRange(), from_index, query_flag(query, "prev")


def range_limit_of(query: Mapping[str, Any]) -> int:
    raw = query.get("limit")
    if raw is None:
        return RANGE_LIMIT_DEFAULT
    limit = number_of(raw)
    if limit is None or not 1 <= limit <= RANGE_LIMIT_MAX:
        raise BadRequest(f"'limit' must be an integer from 1 to {RANGE_LIMIT_MAX}")
    return limit


def transaction_of(body: dict[str, Any], value_bytes_max: int) -> Txn:
    """The transaction of a `POST /v1/txn` body, every part checked (SPEC §6)."""
    parts = {name: body.get(name, []) for name in ("compare", "success", "failure")}
    try:
        txn = msgspec.convert(parts, Txn)
    except msgspec.ValidationError as error:
        raise BadRequest(f"malformed transaction: {error}") from None
    branches = [*txn.success, *txn.failure]
    if len(txn.compare) + len(branches) > TXN_OPS_MAX:
        raise BadRequest(f"a transaction has at most {TXN_OPS_MAX} compares and operations")
    for compare in txn.compare:
        checked_key(compare.key, "key")
        if not well_typed(compare):
            raise BadRequest(
                f"a compare's target is one of {', '.join(COMPARE_TARGETS)}, its op one of"
                f" {' '.join(COMPARE_OPS)}; its value a string for value, true or false for"
                " exists (== and != only), an integer otherwise"
            )
    value_bytes = 0
    for op in branches:
        if op.op not in BRANCH_OPS:
            raise BadRequest(f"an operation's op is one of {', '.join(BRANCH_OPS)}")
        if op.op == "range":
            bounds = {"prefix": op.prefix, "start": op.start, "end": op.end}
            key_range_of({name: bound for name, bound in bounds.items() if bound is not None})
            range_limit_of({"limit": op.limit} if op.limit is not None else {})
            continue
        checked_key(op.key or "", "key")
        if op.op == "put":
            if op.value is None:
                raise BadRequest("a put needs a string 'value'")
            lease_of({"lease": op.lease})
            value_bytes += len(op.value.encode("utf-8", errors="surrogatepass"))
    if value_bytes > value_bytes_max:
        raise TooLarge(f"a transaction's values are at most {value_bytes_max} bytes together")
    return txn


def query_flag(query: Mapping[str, str], name: str) -> bool:
    raw = query.get(name, "false")
    if raw not in ("true", "false"):
        raise BadRequest(f"{name!r} must be true or false")
    return raw == "true"


def after_of(query: Mapping[str, str]) -> str | None:
    token = query.get("after")
    if token is None:
        return None
    key = key_after_token(token)
    if key is None or len(key.encode("utf-8", errors="surrogatepass")) > KEY_BYTES_MAX:
        raise BadRequest("'after' must be a 'next' token of a previous page")
    return key


def range_answer(page: RangePage, index: int, keys_only: bool) -> dict[str, Any]:
    """The body of `GET /v1/kv` (SPEC §6, "Ranges")."""
    items = page.items
    return {
        "kvs": [record.to_json(key, keys_only) for key, record in items],
        "count": page.count,
        "more": page.more,
        "next": page_token(items[-1][0]) if page.more and items else None,
        "index": index,
    }


def body_of(request: Request, required: bool = True) -> dict[str, Any]:
    raw = request.body
    if not raw and not required:
        return {}
    try:
        body = json_decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
        # A string that is not UTF-8, nesting past the recursion limit: msgspec's own types.
        raise BadRequest(f"malformed JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def optional_string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{name!r} must be a string")
    return value


def optional_flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{name!r} must be true or false")
    return value


def number_of(value: object) -> int | None:
    """`value` as an integer in 0..NUMBER_MAX (a JSON number, or a string of ASCII digits
    from a URL), or None. str.isdigit() alone takes "²" and other digits int() refuses."""
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()) or len(value) > 19:
            return None
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= NUMBER_MAX:
        return None
    return value


def count_of(source: dict[str, Any], name: str) -> int | None:
    """An optional non-negative integer (a digit string too: DELETE takes it in the query)."""
    value = source.get(name)
    if value is None:
        return None
    number = number_of(value)
    if number is None:
        raise BadRequest(f"{name!r} must be an integer from 0 to {NUMBER_MAX}")
    return number


def lease_of(body: dict[str, Any]) -> int:
    """A write's `lease` (SPEC §6, "Leases"): the lease to attach the key to, 0 for none."""
    lease = body.get("lease", 0)
    if number_of(lease) is None or isinstance(lease, str):
        raise BadRequest(f"'lease' must be a lease id, an integer from 1 to {NUMBER_MAX}")
    return lease  # type: ignore[no-any-return]


def session_of(source: dict[str, Any]) -> tuple[str, int, int | None]:
    """The write's client session: client id, seq and `after_index` (SPEC §3, §6)."""
    client_id = source.get("client_id") or ""
    if not isinstance(client_id, str) or len(client_id) > 128:
        raise BadRequest("'client_id' must be a string of at most 128 characters")
    seq = count_of(source, "seq") or 0
    after_index = count_of(source, "after_index")
    if client_id and seq == 0:
        raise BadRequest("a 'client_id' needs a 'seq' of 1 or more")
    if after_index is not None and not client_id:
        raise BadRequest("'after_index' belongs to a session: it needs a 'client_id'")
    return client_id, seq, after_index
