"""A socket's connect in one worker-thread call.

A producer's connect used to cost three thread hops and a dozen database
round trips plus two Redis scripts and a channel-layer join — 15-27 ms of
server CPU, so a deploy's reconnect storm of 500 producers took 15-18 s to
get through (docs/benchmarks.md). Here it is one call in a worker thread:

1. who connects (the principal core: the token spent, the session and the
   clinic's quota read with it) — and whether the session may take audio
   at all: the consent gate reads the session row and clinic just read;
2. the session's producer lease and one of the clinic's stream slots, in
   one Redis step (``LiveStore.claim_slot_sync``) that also reads where the
   session's control log stands (its relay position);
3. the stored audio's length (only for a session that streamed before);
4. ``stream_start``: for a new session one statement (no transaction
   around it: it is atomic alone) takes it live with its ``stream.start``
   audit row; a session that streamed before has its stored finals summed
   up. The relay position was read before that statement's row lock, so an
   end committed after the lock's check is an event after that position
   (the REST end publishes after its commit, and its commit waits for the
   lock), which the stream then subscribes from; an end committed before
   the check refuses the connect. Events between the position and the
   check are caught up on subscribe.

A viewer's connect is the same single call: who connects, the relay
position, the stored finals and the ``transcript.live_view`` audit row.
"""

from __future__ import annotations

from dataclasses import dataclass

from sessions import audio_store
from sessions.models import CLOSED_STATUSES, SessionStatus, TranscriptSegment
from sessions.services import SessionEnded, StreamStart, stream_start, viewer_start
from transcription import relay
from transcription.engine_feed import MAX_REPLAY_MS
from transcription.live_state import Claim, LiveStore
from transcription.socket_auth import StreamAuth, authorize
from voiceai.errors import Conflict, ConsentRequired, QuotaExceeded


class ProducerActive(Conflict):
    code = "producer_active"
    default_message = "Another connection is streaming this session. Reconnect with takeover=1 to replace it."
    retryable = True


class BatchSession(Conflict):
    code = "batch_session"
    default_message = "This session transcribes an uploaded file."


class StreamSlotsFull(QuotaExceeded):
    code = "concurrent_sessions_exceeded"
    default_message = "The clinic's concurrent-session quota is full."
    retryable = True


@dataclass
class ProducerConnect:
    auth: StreamAuth
    claim: Claim
    parts: audio_store.PartsIndex
    started: StreamStart
    # Where the session's control log stood when the session was checked open.
    relay_seq: int
    relay_epoch: str | None


def producer_connect(
    *,
    token: str | None,
    web_session_key: str | None,
    session_id: str,
    client_ip: str | None,
    live: LiveStore,
    owner: str,
    takeover: bool,
    finals_received: int | None,
) -> ProducerConnect:
    """Everything a producer's connect needs from the database, Redis and
    storage. Raises a DomainError (the error map gives its close code)."""
    auth = authorize(token=token, web_session_key=web_session_key, session_id=session_id, client_ip=client_ip)
    session = auth.session
    if session.status in CLOSED_STATUSES:
        raise SessionEnded()
    if session.source == "batch":
        # Its audio is the uploaded file: a stream's parts would replace it
        # when the stream seals the session.
        raise BatchSession()
    if auth.principal.clinic.consent_required and not session.has_consent:
        # Before the slot, the lease and ``stream_start``: no audio is
        # accepted, nothing is stored, the session does not go live.
        raise ConsentRequired()
    claim = live.claim_slot_sync(
        clinic_id=session.clinic_id,
        session_id=session.pk,
        owner=owner,
        takeover=takeover,
        limit=auth.max_concurrent,
        relay_meta_key=relay.relay_meta_key(session.clinic_id, relay.control_log(session.pk)),
    )
    if not claim.ok:
        raise StreamSlotsFull() if claim.refused == "quota_full" else ProducerActive()
    try:
        # A session that never streamed has no audio stored (unless a
        # producer taking over raced its first connect: then look).
        if session.status == SessionStatus.CREATED and not takeover:
            parts = audio_store.PartsIndex(chain=[], durable_bytes=0, part_count=0)
        else:
            parts = audio_store.parts_scan(session)
        # Where the control log stands, read before the session's row is
        # checked open (see the module docstring); Redis read it with the claim.
        relay_seq, relay_epoch = claim.relay_position or relay.position_sync(
            session.clinic_id, relay.control_log(session.pk)
        )
        started = stream_start(
            principal=auth.principal,
            session_id=session.pk,
            resume_from_byte=parts.durable_bytes,
            takeover=bool(claim.previous_owner),
            finals_received=finals_received,
            recent_ms=MAX_REPLAY_MS,
        )
    except BaseException:
        live.release_sync(clinic_id=session.clinic_id, session_id=session.pk, owner=owner)
        raise
    return ProducerConnect(
        auth=auth, claim=claim, parts=parts, started=started, relay_seq=relay_seq, relay_epoch=relay_epoch
    )


@dataclass
class ViewerConnect:
    auth: StreamAuth
    status: str
    sample_rate: int
    finals: list[TranscriptSegment]  # the stored finals (none for a resume)
    relay_seq: int
    relay_epoch: str | None


def viewer_connect(
    *, token: str | None, web_session_key: str | None, session_id: str, client_ip: str | None, resuming: bool
) -> ViewerConnect:
    """Who watches, where the relay stands, and (unless ``resuming``) the
    stored finals, read after that position: a final stored before the
    read is in them, and one published after it comes through the relay
    (a final in both is sent once, by segment id)."""
    auth = authorize(token=token, web_session_key=web_session_key, session_id=session_id, client_ip=client_ip)
    session = auth.session
    relay_seq, relay_epoch = relay.position_sync(session.clinic_id, session.pk)
    start = viewer_start(principal=auth.principal, session_id=session.pk, with_finals=not resuming)
    return ViewerConnect(
        auth=auth,
        status=start.status,
        sample_rate=start.sample_rate,
        finals=start.finals,
        relay_seq=relay_seq,
        relay_epoch=relay_epoch,
    )
