"""ASGI entry point: HTTP goes to Django, WebSockets to the transcription
consumers behind origin and auth checks."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceai.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from transcription.routing import WebSocketOriginGuard, websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": WebSocketOriginGuard(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# The start-up heap (~75k objects after django.setup()) would otherwise be
# rescanned by every full collection, a ~45 ms stall for every stream
# (measured-facts.md). Freeze it once, after everything is imported.
gc.collect()
gc.freeze()
