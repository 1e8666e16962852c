"""Amazon Bedrock's Converse API as a note engine (boto3 ``bedrock-runtime``
``converse``). Model id and region come from settings; a clinic must have
opted in (``Clinic.notes_bedrock_enabled``, checked by ``notes.services``).

The request carries the transcript and nothing else that identifies
anyone: no clinic, session, user or external ref, no ``requestMetadata``;
segment ids (``seg-3``) are the engine's own labels, not identifiers of a
person. The model must answer with JSON naming, for each sentence, the
segment ids it is drawn from; an answer that is not that JSON, or cites a
segment the transcript does not have, is ``note_output_invalid`` (not
retried by itself: the same prompt would likely fail the same way).

Errors: throttling, timeouts, 5xx and "model not ready" are retryable;
access denied, validation and unknown model are not. botocore's own retries
are off: the job's retry (with its delay and visible state) is the one.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings

from notes.engines.base import DraftSentence, NoteDraft, NoteEngine, NoteEngineError, NoteRequest, Progress
from voiceai.logging import get_logger

log = get_logger(__name__)

PROMPT_VERSION = "bedrock-soap-1"

SYSTEM_PROMPT = (
    "You draft a clinical SOAP note from a consultation transcript for the treating clinician to check and sign. "
    "Use only what the transcript says; never add findings, diagnoses or plans that were not spoken. Write in the "
    "transcript's language ({language}). Answer with one JSON object and nothing else: "
    '{{"subjective": [{{"text": "...", "evidence": ["<segment id>", ...]}}], "objective": [...], '
    '"assessment": [...], "plan": [...]}}. Every sentence lists the ids of the transcript lines it is drawn from '
    "(at least one). A section with nothing to say is an empty list."
)

RETRYABLE = {
    "ThrottlingException": "note_engine_throttled",
    "ServiceUnavailableException": "note_engine_unavailable",
    "InternalServerException": "note_engine_unavailable",
    "ModelNotReadyException": "note_engine_unavailable",
    "ModelTimeoutException": "note_engine_timeout",
}
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


def transcript_prompt(request: NoteRequest) -> str:
    """One line per final: ``[seg-3] patient: text``."""
    lines = [f"[{s.segment_id}] {s.role or 'speaker'}: {' '.join(s.text.split())}" for s in request.segments]
    return "Transcript:\n" + "\n".join(lines)


def parse_answer(text: str) -> dict[str, list[DraftSentence]]:
    """The model's JSON as draft sections; NoteEngineError otherwise."""
    try:
        data = json.loads(_FENCE.sub("", text.strip()))
    except ValueError:
        raise NoteEngineError("the model's answer is not JSON", code="note_output_invalid") from None
    if not isinstance(data, dict):
        raise NoteEngineError("the model's answer is not an object", code="note_output_invalid")
    sections: dict[str, list[DraftSentence]] = {}
    for key in ("subjective", "objective", "assessment", "plan"):
        items = data.get(key, [])
        if not isinstance(items, list):
            raise NoteEngineError("a section is not a list", code="note_output_invalid")
        sections[key] = []
        for item in items:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("text"), str)
                or not isinstance(item.get("evidence"), list)
                or not all(isinstance(e, str) for e in item["evidence"])
            ):
                raise NoteEngineError("a sentence is malformed", code="note_output_invalid")
            sections[key].append(DraftSentence(text=" ".join(item["text"].split()), evidence=list(item["evidence"])))
    return sections


class BedrockNoteEngine(NoteEngine):
    name = "bedrock"

    def __init__(
        self,
        *,
        model_id: str,
        region: str,
        endpoint_url: str | None = None,
        timeout: float = 60.0,
        max_tokens: int = 2000,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.model_id = model_id
        self.region = region
        self.endpoint_url = endpoint_url or None
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.credentials = credentials

    @classmethod
    def from_settings(cls) -> BedrockNoteEngine:
        return cls(
            model_id=settings.NOTES_BEDROCK_MODEL_ID,
            region=settings.NOTES_BEDROCK_REGION,
            endpoint_url=settings.NOTES_BEDROCK_ENDPOINT_URL,
            timeout=settings.NOTES_BEDROCK_TIMEOUT_SECONDS,
            max_tokens=settings.NOTES_BEDROCK_MAX_TOKENS,
        )

    def _client(self) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            region_name=self.region,
            connect_timeout=min(10.0, self.timeout),
            read_timeout=self.timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
        )
        kwargs: dict[str, Any] = {"config": config, "endpoint_url": self.endpoint_url}
        if self.credentials is not None:
            kwargs.update(aws_access_key_id=self.credentials[0], aws_secret_access_key=self.credentials[1])
        return boto3.client("bedrock-runtime", **kwargs)

    def generate(self, request: NoteRequest, *, progress: Progress) -> NoteDraft:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        prompt = transcript_prompt(request)
        system = SYSTEM_PROMPT.format(language=request.language)
        if not request.segments:
            return NoteDraft(
                sections={}, model_id=self.model_id, prompt_version=PROMPT_VERSION, input_chars=0, output_chars=0
            )
        progress(20)
        try:
            answer = self._client().converse(
                modelId=self.model_id,
                system=[{"text": system}],
                messages=[{"role": "user", "content": [{"text": prompt}]}],
                inferenceConfig={"maxTokens": self.max_tokens, "temperature": 0.0},
            )
        except ClientError as exc:
            error = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            # The code only: the message may quote the request.
            log.warning("bedrock_call_failed", error=error, status=status)
            if error in RETRYABLE or status == 429 or status >= 500:
                raise NoteEngineError(
                    "Bedrock refused for now", code=RETRYABLE.get(error, "note_engine_unavailable"), retryable=True
                ) from None
            raise NoteEngineError("Bedrock refused the request", code="note_engine_denied") from None
        except (ReadTimeoutError, ConnectTimeoutError):
            log.warning("bedrock_call_timeout", timeout=self.timeout)
            raise NoteEngineError(
                "Bedrock did not answer in time", code="note_engine_timeout", retryable=True
            ) from None
        except (EndpointConnectionError, BotoCoreError) as exc:
            log.warning("bedrock_call_unreachable", error=type(exc).__name__)
            raise NoteEngineError("Bedrock unreachable", code="note_engine_unavailable", retryable=True) from None
        progress(80)
        try:
            blocks = answer["output"]["message"]["content"]
            text = "".join(block.get("text", "") for block in blocks)
        except (KeyError, TypeError):
            raise NoteEngineError("no message in the answer", code="note_output_invalid") from None
        sections = parse_answer(text)
        return NoteDraft(
            sections=sections,
            model_id=self.model_id,
            prompt_version=PROMPT_VERSION,
            input_chars=len(system) + len(prompt),
            output_chars=len(text),
        )
