"""Which spoken languages a clinic's speech engine transcribes.

Engines declare it (``Engine.languages``, in the realtime layer, which
``sessions`` must not import); ``transcription`` registers the lookup here
when its app is ready, like ``sessions/live.py``. Session creation refuses a
language the engine can't do (400 ``language_not_supported``) and the
console disables it with the reason, so nothing is recorded for an engine
that would refuse it.
"""

from collections.abc import Callable

from django.conf import settings

from clinics.models import Clinic, Language

LanguagesLookup = Callable[[str], frozenset[str] | None]

_lookup: LanguagesLookup | None = None


def engine_languages_register(lookup: LanguagesLookup) -> None:
    global _lookup
    _lookup = lookup


def clinic_engine(clinic: Clinic) -> str:
    return clinic.transcription_engine or settings.TRANSCRIPTION_ENGINE


def clinic_engine_languages(clinic: Clinic) -> list[str]:
    """The clinic's spoken languages (``Language`` values) its engine transcribes."""
    if _lookup is None:
        raise RuntimeError("no engine lookup registered (is the transcription app installed?)")
    supported = _lookup(clinic_engine(clinic))
    return [code for code in Language.values if supported is None or code in supported]
