"""The one client-IP rule (voiceai.client_ip): behind the TLS proxy the last
X-Forwarded-For hop, otherwise the peer; anything unparsable is no address."""

import pytest
from django.test import RequestFactory

from voiceai.client_ip import client_ip, client_ip_decide

PROXY = ("HTTP_X_FORWARDED_PROTO", "https")


@pytest.mark.parametrize(
    ("peer", "forwarded", "behind_proxy", "expected"),
    [
        ("10.0.0.5", "6.6.6.6, 10.0.0.7", True, "10.0.0.7"),
        ("10.0.0.5", "not-an-ip, 10.0.0.7", True, "10.0.0.7"),
        ("10.0.0.5", "10.0.0.7, not-an-ip", True, None),
        ("10.0.0.5", "", True, "10.0.0.5"),
        ("10.0.0.5", " , 2001:db8::1 ", True, "2001:db8::1"),
        ("10.0.0.5", "6.6.6.6, 10.0.0.7", False, "10.0.0.5"),
        ("not-an-ip", None, False, None),
        (None, None, False, None),
    ],
)
def test_it_takes_the_last_trusted_hop(settings, peer, forwarded, behind_proxy, expected):
    settings.SECURE_PROXY_SSL_HEADER = PROXY if behind_proxy else None
    assert client_ip_decide(peer=peer, forwarded_for=forwarded) == expected


def test_it_reads_requests_and_scopes_alike(settings):
    settings.SECURE_PROXY_SSL_HEADER = PROXY
    request = RequestFactory().get("/", REMOTE_ADDR="6.6.6.6", HTTP_X_FORWARDED_FOR="6.6.6.6, 10.0.0.7")
    scope = {
        "type": "websocket",
        "client": ("6.6.6.6", 0),
        "headers": [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"10.0.0.7")],
    }
    assert client_ip(request) == client_ip(scope) == "10.0.0.7"
    assert client_ip({"type": "websocket"}) is None
