"""ASGI entry point: HTTP goes to Django, WebSockets to the transcription
consumers behind origin and auth checks."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceai.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from agents.http import with_mcp  # noqa: E402
from notes.worker import note_worker_start  # noqa: E402
from transcription.reaper import start_reaper  # noqa: E402
from transcription.routing import WebSocketOriginGuard, install_token_redaction, websocket_urlpatterns  # noqa: E402
from voiceai.body_limits import RequestBodyLimit  # noqa: E402
from voiceai.ops import collector  # noqa: E402
from voiceai.ops.cloudwatch import start_publisher as start_cloudwatch_publisher  # noqa: E402

# Stream tokens ride in the query string; servers log it on connect.
install_token_redaction()

# Every ended connection and request counts towards the next full garbage
# collection (voiceai/ops/collector.py): the cycles they leave are only
# freed by one.
application = collector.FullCollectionAfterScopes(
    ProtocolTypeRouter(
        {
            # Body limits before Django spools a byte (and before authentication);
            # /mcp is the MCP server for AI assistants (agents/, docs/mcp.md).
            "http": RequestBodyLimit(with_mcp(django_asgi_app)),
            # No AuthMiddlewareStack: the consumers read the session cookie
            # themselves, only when there is no token and the Origin is trusted,
            # inside their one connect-time DB call.
            "websocket": WebSocketOriginGuard(URLRouter(websocket_urlpatterns)),
        }
    )
)

# On AWS: scaling and alarm metrics to CloudWatch once a minute (no-op
# unless CLOUDWATCH_METRICS_NAMESPACE is set).
start_cloudwatch_publisher()

# Recordings disconnected for longer than their clinic's grace are ended and
# sealed by whichever process's turn it is (transcription/reaper.py).
start_reaper()

# Note drafts (notes/, docs/notes.md) are jobs in PostgreSQL: each process
# polls for due ones and for ones whose process died (expired lease), so a
# restart resumes every job; a session's end also starts its job at once.
note_worker_start()

# The start-up heap frozen, young collections made rare (voiceai/ops/collector.py).
collector.tune()
