"""The HTTP server's request and response records (`http_server`).

msgspec Structs, so kept in a module mypyc leaves interpreted (setup.py compiles
`http_server`): a Struct defined in a compiled module loses its fields' type parameters.
"""

from __future__ import annotations

import msgspec

_json_encode = msgspec.json.Encoder().encode


class Request(msgspec.Struct, gc=False):
    method: str
    path: str  # percent-decoded
    query: dict[str, str]  # the first value of each name
    body: bytes
    keep_alive: bool
    http10: bool = False  # HTTP/1.0: keep-alive only when asked for, and confirmed
    # The `Authorization` header ("" when absent; repeated ones joined by ", ", which no
    # scheme accepts). A credential: never logged, and left out of the repr.
    authorization: str = ""

    def __repr__(self) -> str:
        return f"Request({self.method} {self.path}, {len(self.body)} body bytes)"


class Response(msgspec.Struct, gc=False):
    status: int
    body: bytes
    content_type: str = "application/json"
    # Further header lines, each "Name: value" (e.g. `WWW-Authenticate` on a 401).
    headers: tuple[str, ...] = ()

    @classmethod
    def json(cls, payload: object, status: int = 200) -> Response:
        return cls(status, _json_encode(payload))

    @classmethod
    def error(cls, status: int, code: str, message: str | None = None, **extra: object) -> Response:
        payload: dict[str, object] = {"error": code, **extra}
        if message is not None:
            payload["message"] = message
        return cls.json(payload, status)

    def with_headers(self, *lines: str) -> Response:
        return Response(self.status, self.body, self.content_type, (*self.headers, *lines))
