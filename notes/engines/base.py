"""The one interface every note engine implements, like the speech engines'
(``transcription/engines/base.py``).

A transcript goes in as ``NoteSegment``s (finals at their latest revision,
with the speaker's role where known); a ``NoteDraft`` comes out: sentences
sorted into the four SOAP sections, each naming the segments it is drawn
from. Engines raise only ``NoteEngineError`` (vendor errors are translated
in the adapter), which says whether a retry could help. ``generate`` is
synchronous: the job runs it in a worker thread, never on an event loop.
"""

import abc
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class NoteSegment:
    segment_id: str
    start_ms: int
    end_ms: int
    text: str
    role: str | None = None  # clinician, patient, family, other; None: unknown


@dataclass(frozen=True, slots=True)
class NoteRequest:
    """What an engine is given: the language and the transcript. Nothing
    else — no clinic, session or patient identifier reaches an engine."""

    language: str
    segments: tuple[NoteSegment, ...]


@dataclass(slots=True)
class DraftSentence:
    text: str
    evidence: list[str]  # segment ids of the request's segments


@dataclass(slots=True)
class NoteDraft:
    sections: dict[str, list[DraftSentence]]
    model_id: str = ""
    prompt_version: str = ""
    input_chars: int = 0
    output_chars: int = 0
    extra: dict[str, str] = field(default_factory=dict)


class NoteEngineError(Exception):
    """The only error a note engine raises. ``retryable`` says whether the
    same request later could succeed (throttling, timeouts, 5xx) or not
    (malformed model output, access denied, a bad request). ``code`` is
    stable and carries no vendor text (it is stored and shown)."""

    def __init__(self, message: str, *, code: str = "note_engine_error", retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


Progress = Callable[[int], None]


class NoteEngine(abc.ABC):
    name: str = "base"

    @abc.abstractmethod
    def generate(self, request: NoteRequest, *, progress: Progress) -> NoteDraft:
        """The draft for ``request``; calls ``progress(percent)`` as it goes.
        Raises NoteEngineError."""
