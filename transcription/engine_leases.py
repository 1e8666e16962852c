"""Upstream streams holding an engine-quota lease, and the opener that
gets them: wait for a lease (``Queued`` notices), open the stream in the
lease's region, mark a failing region down so the retry fails over.
See ``transcription.engine_quota`` for the quota itself."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable

from transcription.engine_quota import EngineQuota, StreamLease
from transcription.engines.base import Engine, EngineError, EngineStream, StreamConfig
from voiceai.logging import get_logger
from voiceai.ops.metrics import ENGINE_REGION_STREAMS, ENGINE_STREAM_FAILURES, ENGINE_STREAM_STARTS

logger = get_logger(__name__)

# Errors that say "this region cannot take a stream right now".
_REGION_TROUBLE = {
    "aws_limit_exceeded",
    "aws_service_unavailable",
    "aws_internal_failure",
    "aws_connection",
    "aws_connection_closed",
}


class LeasedStream(EngineStream):
    """An upstream stream holding a quota lease: renews it while open and
    releases it on ``aclose``."""

    open_streams = 0  # in this process (voiceai_engine_streams_active)
    engine_name = "unknown"  # metric label, set by QuotaOpener

    def __init__(self, inner: EngineStream, quota: EngineQuota, lease: StreamLease) -> None:
        LeasedStream.open_streams += 1
        ENGINE_REGION_STREAMS.labels(region=lease.region).inc()
        self._counted = True
        self.inner = inner
        self.lease = lease
        self.native_finalize = inner.native_finalize
        self._quota = quota
        self._renewer = asyncio.ensure_future(self._renew_loop())

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self._quota.limits.lease_ttl_seconds / 3)
            try:
                await self._quota.renew(self.lease)
            except Exception:
                logger.warning("engine_lease_renewal_failed", region=self.lease.region)

    def send_audio(self, chunk: bytes) -> None:
        self.inner.send_audio(chunk)

    async def finalize(self) -> None:
        await self.inner.finalize()

    async def end(self) -> None:
        await self.inner.end()

    async def events(self):  # type: ignore[override]
        try:
            async for event in self.inner.events():
                yield event
        except EngineError as exc:
            ENGINE_STREAM_FAILURES.labels(engine=self.engine_name, retryable=str(exc.retryable).lower()).inc()
            # A region failing mid-stream: the retry should go elsewhere.
            if exc.code in _REGION_TROUBLE:
                with contextlib.suppress(Exception):
                    await self._quota.mark_region_down(self.lease.region)
            raise

    async def aclose(self) -> None:
        if self._counted:
            self._counted = False
            LeasedStream.open_streams -= 1
            ENGINE_REGION_STREAMS.labels(region=self.lease.region).dec()
        self._renewer.cancel()
        try:
            await self.inner.aclose()
        finally:
            with contextlib.suppress(Exception):
                await self._quota.release(self.lease)


class QuotaOpener:
    """The opener the resilient stream uses: wait for a lease (telling the
    client ``{"type": "Queued", "position": n}``), open the upstream stream
    in the lease's region, and on a region-level failure mark that region
    down so the retry fails over to the next one."""

    def __init__(
        self,
        engine: Engine,
        quota: EngineQuota,
        *,
        clinic_id: str,
        priority: int = 0,
        on_notice: Callable[[dict], None] | None = None,
    ) -> None:
        self.engine = engine
        self.quota = quota
        self.clinic_id = clinic_id
        self.priority = priority
        self._notice = on_notice or (lambda message: None)
        self.regions_used: list[str] = []

    async def __call__(self, config: StreamConfig) -> EngineStream:
        lease = await self.quota.acquire(
            clinic_id=self.clinic_id,
            priority=self.priority,
            on_position=lambda position: self._notice({"type": "Queued", "position": position}),
        )
        extra = {**config.extra, "region": lease.region}
        try:
            inner = await self.engine.open_stream(dataclasses.replace(config, extra=extra))
        except EngineError as exc:
            ENGINE_STREAM_FAILURES.labels(engine=self.engine.name, retryable=str(exc.retryable).lower()).inc()
            await self.quota.release(lease)
            if exc.code in _REGION_TROUBLE:
                await self.quota.mark_region_down(lease.region)
            raise
        except BaseException:
            await asyncio.shield(self.quota.release(lease))
            raise
        self.regions_used.append(lease.region)
        ENGINE_STREAM_STARTS.labels(engine=self.engine.name).inc()
        leased = LeasedStream(inner, self.quota, lease)
        leased.engine_name = self.engine.name
        return leased
