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
    return engine_class(name)()


def engine_class(name: str | None = None) -> type[Engine]:
    """The class behind ``name`` (its declared capabilities), not instantiated."""
    name = name or settings.TRANSCRIPTION_ENGINE
    target = _ENGINES.get(name)
    if target is None:
        raise EngineError(f"unknown engine {name!r}", code="unknown_engine", retryable=False)
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def engine_languages(name: str | None = None) -> frozenset[str] | None:
    """What ``name`` (default: TRANSCRIPTION_ENGINE) transcribes; None: any."""
    return engine_class(name).languages


def engine_names() -> list[str]:
    return sorted(_ENGINES)
