"""What the three venue modules share: the request as read off the wire, the route table, the error
a handler raises to answer with the venue's own error shape, and the per-venue base class."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Mapping

from .ledger import Ledger


@dataclass
class ApiRequest:
    method: str
    path: str
    query_string: str  # raw, as sent: signatures cover the exact bytes
    body: str  # raw
    headers: Mapping[str, str]
    params: dict[str, Any]  # query, form and JSON-object fields merged
    json: Any = None  # the parsed JSON body (okx batch endpoints send a list)


class VenueError(Exception):
    """Answer the request with this HTTP status and body (the venue's error shape)."""

    def __init__(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {payload}")
        self.status = status
        self.payload = payload
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class Route:
    op: str  # a short name for the endpoint, used by fault rules and the request log
    handler: Callable[[ApiRequest], Any]
    private: bool


@dataclass
class Credentials:
    api_key: str = "peer-test-key"
    secret: str = "peer-test-secret"
    passphrase: str = "peer-test-passphrase"  # okx only


@dataclass
class Response:
    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)


class VenueApi:
    """One venue: its ledger, its routes and its auth. Subclasses fill ``routes`` and implement
    ``authenticate``, ``rate_limited`` and ``not_found`` in the venue's own shapes."""

    name = ""

    def __init__(self, ledger: Ledger, credentials: Credentials) -> None:
        self.ledger = ledger
        self.credentials = credentials
        self.routes: dict[tuple[str, str], Route] = {}

    def add(self, method: str, path: str, op: str, handler: Callable[[ApiRequest], Any],
            private: bool = False) -> None:
        self.routes[(method, path)] = Route(op, handler, private)

    def route(self, method: str, path: str) -> Route | None:
        return self.routes.get((method, path))

    def respond(self, request: ApiRequest, route: Route) -> Response:
        """Authenticate (private routes) and run the handler under the ledger lock."""
        try:
            with self.ledger.lock:
                if route.private:
                    self.authenticate(request)
                return Response(200, route.handler(request))
        except VenueError as error:
            return Response(error.status, error.payload, error.headers)

    def authenticate(self, request: ApiRequest) -> None:
        raise NotImplementedError

    def rate_limited(self, retry_after: int) -> Response:
        raise NotImplementedError

    def not_found(self, request: ApiRequest) -> Response:
        raise NotImplementedError

    # ---- helpers for subclasses --------------------------------------------------------------

    def sign_hex(self, payload: str) -> str:
        return hmac.new(self.credentials.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def decimal_param(value: Any) -> Decimal | None:
    """A numeric request field as a Decimal; None when absent or empty."""
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def truthy(value: Any) -> bool:
    """Request booleans arrive as JSON true or as "true"/"True" strings."""
    return value is True or str(value).lower() == "true"
