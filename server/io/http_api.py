"""``POST /api/v1``: which requests the request/response API runs (protocol.md §1).

Served on the WebSocket port and, for deployments that route it apart, on
``server.api_port``: both are `server.io.transport` listeners whose plain HTTP connections
h11 parses (`server.io.http_exchange`), answered in the event loop that owns all state.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

REQUEST_TIMEOUT = 30.0
"""Longest a request may take (storage or the cluster log waited on) before a 503."""
UNAUTHORIZED = {"err": "signature is invalid", "erc": 401}
API_PATH = "/api/v1"


def api_refusal(path: str, length: int, authorization: str, max_body: int) -> tuple[int, Any] | str:
    """The answer to a request the API will not run, or the Bearer token of one it will.
    (h11 has read the body by now, chunked or not, so its length is known.)"""
    if path.split("?", 1)[0].rstrip("/") != API_PATH:
        return HTTPStatus.NOT_FOUND, {"err": "not found", "erc": 404}
    if length > max_body:
        return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"err": "too large", "erc": 413}
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return HTTPStatus.UNAUTHORIZED, UNAUTHORIZED
    return token.strip()
