"""serve's operator routes: the admin ingest, the fault controls and the health check.

    POST /admin/events      ingest events for one account (Bearer admin token)
    POST /admin/faults      fire one fault (Bearer admin token; faults.py)
    GET /admin/faults       the faults fired, the windows running, the latest faults (Bearer admin token)
    GET /healthz            status, accounts and connection counts (no secrets)

This module translates HTTP to calls of `ExchangeServer` (exchange.py) and `FaultController` (faults.py)
and back; docs/server.md has the contract.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any, Final

import msgspec
from aiohttp import web

from userstream.logs import log_event
from userstream.server.backend.interface import BackendUnavailableError
from userstream.server.exchange import ExchangeServer
from userstream.server.faults import (
    ADMIN_FAULTS_PATH,
    MAX_FAULT_BODY,
    FaultController,
    FaultError,
    parse_fault,
)
from userstream.server.ingest import IngestError, parse_batch

__all__ = ["ADMIN_EVENTS_PATH", "HEALTH_PATH", "add_routes"]

ADMIN_EVENTS_PATH: Final = "/admin/events"
HEALTH_PATH: Final = "/healthz"

_log = logging.getLogger("userstream.server.app")
_JSON = "application/json"
_ADMIN_REQUIRED = "admin token required: send 'Authorization: Bearer <token>'"


def add_routes(app: web.Application, server: ExchangeServer, faults: FaultController) -> None:
    """Register the admin ingest, the two fault routes and /healthz on `app`."""
    routes = _AdminRoutes(server, faults)
    app.router.add_post(ADMIN_EVENTS_PATH, routes.ingest)
    app.router.add_get(HEALTH_PATH, routes.health)
    app.router.add_post(ADMIN_FAULTS_PATH, routes.fire_fault)
    app.router.add_get(ADMIN_FAULTS_PATH, routes.show_faults)


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=msgspec.json.encode(body), content_type=_JSON)


class _AdminRoutes:
    def __init__(self, server: ExchangeServer, faults: FaultController) -> None:
        self.server = server
        self.config = server.config
        self.faults = faults

    async def ingest(self, request: web.Request) -> web.Response:
        if not self._is_admin(request):
            return _json(401, {"error": _ADMIN_REQUIRED})
        try:
            body = await request.read()
            account_name, items = parse_batch(body)
            accepted = await self.server.ingest(account_name, items)
        except IngestError as exc:
            log_event(_log, logging.INFO, "ingest refused", status=exc.status, **exc.to_json())
            return _json(exc.status, exc.to_json())
        except BackendUnavailableError as exc:
            log_event(_log, logging.WARNING, "ingest refused", status=503, error=str(exc))
            return _json(503, {"error": f"service unavailable: {exc}"})
        except web.HTTPRequestEntityTooLarge:
            return _json(413, {"error": f"the body exceeds {self.config.max_ingest_body} bytes"})
        log_event(_log, logging.DEBUG, "ingested", account=account_name, events=accepted)
        return _json(200, {"accepted": accepted})

    async def fire_fault(self, request: web.Request) -> web.Response:
        if not self._is_admin(request):
            return _json(401, {"error": _ADMIN_REQUIRED})
        try:
            fault = parse_fault(await request.content.read(MAX_FAULT_BODY + 1))
            report = await self.faults.fire(fault)
        except FaultError as exc:
            return _json(exc.status, exc.to_json())
        return _json(200, report.to_json())

    async def show_faults(self, request: web.Request) -> web.Response:
        if not self._is_admin(request):
            return _json(401, {"error": _ADMIN_REQUIRED})
        return _json(200, self.faults.to_json())

    async def health(self, request: web.Request) -> web.Response:
        body = self.server.health()
        return _json(503 if body["status"] == "unavailable" else 200, body)

    def _is_admin(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self.config.admin_token.encode())
