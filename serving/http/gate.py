"""Every HTTP exchange's bookends: who the caller is, and what gets measured and audited.

An inference route asks the gate for its :class:`RequestContext` (request id, caller, routing
key, pins; or the 401/403 that refuses it), hands the context to the data plane, and gives the
plane's :class:`Outcome` back to the gate, which answers, measures and audits it. Admin routes
use :meth:`Gate.audited` so that every admin action is recorded with who did it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse

from serving import metrics
from serving.access import ApiKeyStore, AuthPolicy, Principal, allows, check_access
from serving.audit import AdminRecord, AuditWriter
from serving.canary.pins import PIN_HEADER, versions_header
from serving.errors import CanaryError, ServiceUnavailable
from serving.http.errors import ErrorResponse, error_response, request_id_of
from serving.inference import Outcome, RequestContext, audit_record

KEY_HEADER = "x-canary-key"
T = TypeVar("T")


class Gate:
    def __init__(
        self, policy: AuthPolicy, keys_path: Path, audit: AuditWriter | None, store_inputs: bool
    ) -> None:
        self._policy = policy
        self.keys_path = keys_path
        self._audit = audit
        self._store_inputs = store_inputs
        self._keys: ApiKeyStore | None = None
        self._keys_stamp: int | None = None

    # --- who --------------------------------------------------------------------------------

    def access(self, request: Request, role: str) -> Principal:
        """The caller's principal if it may use a route that needs ``role`` (else 401/403)."""
        try:
            stamp: int | None = self.keys_path.stat().st_mtime_ns
        except OSError:
            stamp = None
        if self._keys is None or stamp != self._keys_stamp:
            # Keys added or revoked (HTTP or CLI) take effect on the next request.
            self._keys = ApiKeyStore.load(self.keys_path, os.environ)
            self._keys_stamp = stamp
        host = request.client.host if request.client else None
        return check_access(self._policy, self._keys, request.headers, host, role)

    def inference(self, request: Request, route: str) -> tuple[RequestContext, CanaryError | None]:
        """The context of an inference request, and the refusal if the caller may not infer."""
        started = time.perf_counter()
        host = request.client.host if request.client else None
        refused: CanaryError | None = None
        caller = host or "unknown"
        may_pin = False
        try:
            principal = self.access(request, "infer")
            if principal.key_id:
                caller = principal.name
            may_pin = allows(self._policy, principal, host, "operator")
        except CanaryError as e:
            refused = e
        ctx = RequestContext(
            request_id=request_id_of(request),
            route=route,
            caller=caller,
            sticky_key=request.headers.get(KEY_HEADER) or host,
            pin_header=request.headers.get(PIN_HEADER),
            may_pin_challenger=may_pin,
            started=started,
        )
        return ctx, refused

    @staticmethod
    def actor(request: Request, principal: Principal) -> str:
        """Who did it: the API key's name; without auth, the client address. Never a header
        the caller writes itself: the audit trail must not name whom a caller chose."""
        if principal.key_id:
            return principal.name
        return request.client.host if request.client else "unknown"

    # --- what happened ----------------------------------------------------------------------

    def respond(self, ctx: RequestContext, outcome: Outcome) -> JSONResponse:
        """Answer with the outcome, then measure and audit it (the audit write is batched)."""
        t0 = time.perf_counter()
        if outcome.error is None:
            versions = outcome.versions
            response: JSONResponse = JSONResponse(
                outcome.body, headers={"X-Model-Versions": versions_header(versions)}
            )
            code = "ok"
        else:
            error: ErrorResponse = error_response(outcome.error, ctx.request_id, id_header=False)
            response, code = error, error.code
        t1 = time.perf_counter()
        ctx.stages["serialise"] = t1 - t0
        status = response.status_code
        if self._audit is not None:
            ms = (t1 - ctx.started) * 1000
            record = audit_record(ctx, outcome, status, None if code == "ok" else code, ms)
            self._audit.submit(record)
            raw = outcome.input_bytes
            if raw is not None and record.input_sha256 is not None and self._store_inputs:
                self._audit.submit_input(record.input_sha256, raw)
            ctx.stages["audit"] = time.perf_counter() - t1
        seconds = ctx.elapsed_s()
        metrics.observe_request(ctx.route, status, code, seconds, outcome.versions)
        metrics.observe_stages(ctx.stages, route=ctx.route)
        return response

    async def audited(
        self,
        actor: str,
        action: str,
        target: str,
        work: Awaitable[T],
        *,
        done_target: Callable[[T], str] | None = None,
        done_detail: Callable[[T], dict[str, Any]] | None = None,
        **detail: Any,
    ) -> T:
        """Await an admin action and audit its outcome, with who did it: the error code (and
        the error goes on to the caller) or "ok" (the target and detail may come from the
        result, e.g. the id of the rollout it started)."""
        try:
            out = await work
        except CanaryError as e:
            self.admin_record(actor, action, target, e.code, **detail)
            raise
        if done_detail is not None:
            detail = {**detail, **done_detail(out)}
        self.admin_record(
            actor, action, done_target(out) if done_target else target, "ok", **detail
        )
        return out

    def admin_record(self, who: str, action: str, target: str, outcome: str, **detail: Any) -> None:
        if self._audit is None:
            return
        self._audit.submit(
            AdminRecord(
                ts=time.time(),
                actor=who,
                action=action,
                target=target,
                detail=detail,
                outcome=outcome,
            )
        )

    def audit_writer(self) -> AuditWriter:
        if self._audit is None:
            raise ServiceUnavailable("the audit trail is disabled in the config")
        return self._audit
