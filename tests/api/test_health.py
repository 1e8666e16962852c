import pytest
from django.test import Client


@pytest.fixture
def client():
    return Client()


def test_it_answers_healthz_without_touching_services(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_it_is_ready_when_database_and_storage_answer(client, db, tmp_media, settings):
    settings.REDIS_URL = ""
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "storage": "ok"}}


def test_it_is_not_ready_when_redis_is_unreachable(client, db, tmp_media, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"] == "unavailable"
    assert response.json()["checks"]["database"] == "ok"


def test_it_is_not_ready_when_storage_is_not_writable(client, db, tmp_path, settings):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings.REDIS_URL = ""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(blocker / "media")},
        },
    }
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["storage"] == "unavailable"


def test_it_checks_redis_when_configured(client, db, tmp_media, settings):
    import os

    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL is not set: no Redis to check against")
    settings.REDIS_URL = url
    assert client.get("/readyz").json()["checks"]["redis"] == "ok"


def test_it_answers_probes_addressed_to_an_ip_not_in_allowed_hosts(client, db, tmp_media, settings):
    settings.ALLOWED_HOSTS = ["api.example.org"]
    settings.REDIS_URL = ""
    assert client.get("/healthz", HTTP_HOST="10.0.3.17:8000").status_code == 200
    assert client.get("/readyz", HTTP_HOST="10.0.3.17:8000").status_code == 200
    assert client.get("/api/v1/schema/", HTTP_HOST="10.0.3.17:8000").status_code == 400


def test_it_checks_the_s3_bucket(client, db, settings):
    import boto3
    from moto import mock_aws

    settings.REDIS_URL = ""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {"bucket_name": "voiceai-ready", "region_name": "us-east-1"},
        },
    }
    with mock_aws():
        assert client.get("/readyz").json()["checks"]["storage"] == "unavailable"  # no bucket yet
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="voiceai-ready")
        response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"]["storage"] == "ok"
