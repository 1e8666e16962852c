"""pytest fixtures for the stand-in. Import them into a conftest:
``from tests.transcribe_standin.fixtures import standin_cert, transcribe_standin``."""

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.transcribe_standin.certs import make_self_signed_cert
from tests.transcribe_standin.server import TranscribeStandin


def check_sdk_trusts(url: str, ca_file: str, timeout: float = 5.0) -> None:
    """Open one HTTP/2 connection the way the SDK does (awscrt, ALPN h2,
    the CA file as trust store). An untrusted certificate otherwise shows up
    only after 10-30 s deep inside a test; here it fails in seconds."""
    from urllib.parse import urlparse

    from awscrt import http, io

    parsed = urlparse(url)
    options = io.TlsContextOptions()
    options.override_default_trust_store_from_path(ca_filepath=ca_file)
    tls = io.ClientTlsContext(options).new_connection_options()
    tls.set_server_name(parsed.hostname)
    tls.set_alpn_list(["h2"])
    future = http.HttpClientConnection.new(
        host_name=parsed.hostname,
        port=parsed.port,
        bootstrap=io.ClientBootstrap.get_or_create_static_default(),
        socket_options=io.SocketOptions(),
        tls_connection_options=tls,
    )
    try:
        connection = future.result(timeout)
    except concurrent.futures.TimeoutError:
        pytest.fail(f"TLS handshake with the stand-in did not finish in {timeout}s")
    except Exception as exc:
        pytest.fail(f"the SDK's TLS stack does not accept the stand-in: {exc!r}")
    if connection.version is not http.HttpVersion.Http2:
        pytest.fail(f"stand-in negotiated {connection.version}, not HTTP/2")
    connection.close()


@pytest.fixture(scope="session")
def standin_cert(tmp_path_factory) -> tuple[str, str]:
    return make_self_signed_cert(Path(tmp_path_factory.mktemp("standin-tls")))


@pytest.fixture
def transcribe_standin(standin_cert) -> Iterator[TranscribeStandin]:
    cert, key = standin_cert
    server = TranscribeStandin(cert, key)
    server.start()
    try:
        check_sdk_trusts(server.url, cert)
        yield server
    finally:
        server.stop()
