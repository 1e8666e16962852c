"""``voiceai.asgi:application`` as it is (start-up heap frozen by
voiceai/asgi.py), with its garbage-collector pauses recorded
(``bench.gc_probe``). Server kind ``uvicorn-gcprobe``."""

from bench.gc_probe import install
from voiceai.asgi import application

install(unfreeze=False)

__all__ = ["application"]
