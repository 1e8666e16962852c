import pytest


def test_it_serves_prometheus_metrics_with_http_counts(client, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    client.get("/api/v1/sessions/")  # anonymous: 401
    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").content.decode()
    assert "voiceai_http_requests_total" in body
    assert 'status_class="4xx"' in body
    assert "voiceai_live_sessions" in body


def test_it_hides_metrics_without_the_scrape_token_when_one_is_set(client, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200


@pytest.mark.parametrize("path", ["/metrics", "/%6detrics", "/%6D%65trics"])
def test_it_hides_metrics_without_a_token_when_debug_is_off(client, settings, path):
    settings.DEBUG = False
    settings.METRICS_TOKEN = ""
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("path", ["/%6detrics", "/metric%73"])
def test_it_asks_for_the_token_on_encoded_paths_too(client, settings, path):
    settings.METRICS_TOKEN = "scrape-secret"
    assert client.get(path).status_code == 404
    assert client.get(path, HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200


def test_it_serves_metrics_without_a_token_in_debug(client, settings):
    settings.DEBUG = True
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 200
