"""tests/servers.py starts a real server on a free port and kills it."""

import urllib.request

from tests.servers import requires_shared_database


@requires_shared_database()
def test_it_starts_a_server_that_serves_http_and_kills_it(transactional_db, server_factory):
    server = server_factory()
    try:
        urllib.request.urlopen(f"{server.url}/healthz", timeout=5)
    except urllib.error.HTTPError as exc:  # /healthz may not exist yet; the app still answered
        assert exc.code < 500
    server.kill()
    assert not server.alive()
