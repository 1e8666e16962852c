"""``voiceai.asgi:application`` with ``gc.freeze()`` undone: the other side
of the A/B that shows what freezing the start-up heap buys (full
collections rescanning Django's start-up objects stall every stream).
Server kind ``uvicorn-nofreeze``; pauses recorded by ``bench.gc_probe``."""

from bench.gc_probe import install
from voiceai.asgi import application

install(unfreeze=True)

__all__ = ["application"]
