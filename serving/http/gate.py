"""Every HTTP exchange's bookends: who the caller is, and what gets measured and audited.

An inference route asks the gate for its :class:`RequestContext` (request id, caller, routing
key, pins; or the 401/403 that refuses it), hands the context to the data plane, and gives the
plane's :class:`Outcome` back to the gate, which answers, measures and audits it. Admin routes
use :meth:`Gate.audited` so that every admin action is recorded with who did it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse

from serving import metrics
from serving.access import ApiKeyStore, AuthPolicy, Principal, allows, check_access
from serving.access.policy import presented_key
from serving.access.throttle import KeyThrottle
from serving.audit import AdminRecord, AuditWriter
from serving.canary.pins import PIN_HEADER, versions_header
from serving.errors import CanaryError, ConfigError, ServiceUnavailable, TooManyAuthFailures
from serving.http.errors import ErrorResponse, error_response, request_id_of
from serving.inference import Outcome, RequestContext, audit_record

KEY_HEADER = "x-canary-key"
log = logging.getLogger("canaryserve.http")
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
        self._keys_stamp: tuple[int, int, int] | None = None
        self._throttle = KeyThrottle(
            burst=policy.failure_burst, rate_per_s=policy.failure_rate_per_s
        )

    # --- who --------------------------------------------------------------------------------

    def _store(self) -> ApiKeyStore:
        """The keys, reloaded when the file changed: keys added or revoked (HTTP or CLI) take
        effect on the next request. A file that no longer parses (a hand edit half done) keeps
        the last good keys in force, logged once per version of the file, rather than
        refusing every caller; with none loaded yet it fails closed (500 config_error)."""
        try:
            st = self.keys_path.stat()
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        if self._keys is None or stamp != self._keys_stamp:
            try:
                self._keys = ApiKeyStore.load(self.keys_path, os.environ)
            except ConfigError as e:
                if self._keys is None:
                    raise
                log.error("keeping the last good API keys: %s", e.message)
            self._keys_stamp = stamp
        return self._keys

    async def access(self, request: Request, role: str) -> Principal:
        """The caller's principal if it may use a route that needs ``role`` (else 401/403, or
        429 for a client that presented too many invalid keys). A key not checked before is
        hashed off the event loop, within the client's budget (``serving.access.throttle``)."""
        store = self._store()
        host = request.client.host if request.client else None
        headers: Mapping[str, str] = request.headers
        key = presented_key(headers)
        if key is not None:
            try:
                await self._throttle.check(store, key, host or "unknown")
            except TooManyAuthFailures:
                if self._policy.enabled:
                    raise
                headers = {}  # auth off: the key would only have named the caller
        return check_access(self._policy, store, headers, host, role)

    async def inference(
        self, request: Request, route: str
    ) -> tuple[RequestContext, CanaryError | None]:
        """The context of an inference request, and the refusal if the caller may not infer."""
        started = time.perf_counter()
        host = request.client.host if request.client else None
        refused: CanaryError | None = None
        caller = host or "unknown"
        may_pin = False
        try:
            principal = await self.access(request, "infer")
            if principal.key_id:
                caller = principal.name
            may_pin = self.may(request, principal, "operator")
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

    def may(self, request: Request, principal: Principal, role: str) -> bool:
        """May ``principal`` (let in by :meth:`access`) also do what ``role`` allows?"""
        host = request.client.host if request.client else None
        return allows(self._policy, principal, host, role)

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
