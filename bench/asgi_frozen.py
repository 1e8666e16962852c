"""``voiceai.asgi:application`` with the start-up heap frozen
(``gc.collect(); gc.freeze()``): the A/B for the measured-facts finding
that full collections over Django's ≈ 75,000 start-up objects stall every
stream for tens of milliseconds. The benchmark's ``uvicorn-gcfreeze``
server kind runs this module, so the effect is measured on the same run.
"""

import gc

from voiceai.asgi import application

gc.collect()
gc.freeze()

__all__ = ["application"]
