def test_it_serves_prometheus_metrics_with_http_counts(client):
    client.get("/api/v1/sessions/")  # anonymous: 401
    body = client.get("/metrics").content.decode()
    assert "voiceai_http_requests_total" in body
    assert 'status_class="4xx"' in body
    assert "voiceai_live_sessions" in body


def test_it_hides_metrics_without_the_scrape_token_when_one_is_set(client, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200
