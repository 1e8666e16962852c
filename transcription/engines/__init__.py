"""Engine registry. Engines are imported lazily so the AWS SDK and the
pocketsphinx model load only in processes that use them."""

import importlib
from functools import cache

from django.conf import settings

from transcription.engines.base import Engine, EngineError

_ENGINES: dict[str, str] = {
    "fake": "transcription.engines.fake:FakeEngine",
    "local": "transcription.engines.local:LocalEngine",
    "aws": "transcription.engines.aws:AwsTranscribeEngine",
}


@cache
def get_engine(name: str | None = None) -> Engine:
    """The process-wide engine instance for ``name`` (default: the
    TRANSCRIPTION_ENGINE setting). Unknown names raise EngineError."""
    name = name or settings.TRANSCRIPTION_ENGINE
    target = _ENGINES.get(name)
    if target is None:
        raise EngineError(f"unknown engine {name!r}", code="unknown_engine", retryable=False)
    module_name, _, class_name = target.partition(":")
    engine_class = getattr(importlib.import_module(module_name), class_name)
    return engine_class()


def engine_names() -> list[str]:
    return sorted(_ENGINES)
