"""``voiceai.asgi:application`` with the collector's thresholds put back to
Python's defaults (700, 10, 10) — the other side of the A/B for the raised
young-generation threshold set in voiceai/asgi.py. Server kind
``uvicorn-gcdefault``; pauses recorded by ``bench.gc_probe``."""

import gc

from bench.gc_probe import install
from voiceai.asgi import application

gc.set_threshold(700, 10, 10)
install(unfreeze=False)

__all__ = ["application"]
