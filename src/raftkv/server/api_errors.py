"""The errors a client request's own content causes (a 400, 404, 405 or 413 answer).

Kept apart from `api_requests.py`, which is compiled with mypyc: a compiled class cannot
inherit from `ClientError`, an interpreted one.
"""

from __future__ import annotations

from raftkv.errors import ClientError


class BadRequest(ClientError):
    code = "bad_request"


class TooLarge(ClientError):
    code = "too_large"


class NoRoute(ClientError):
    code = "not_found"


class WrongMethod(ClientError):
    code = "bad_request"
