"""The Converse stand-in as a pytest fixture, with settings pointing the
bedrock note engine at it (fake credentials: the stand-in does not check
signatures, boto3 still signs)."""

import pytest

from tests.bedrock_standin.server import ConverseStandin, start_standin


@pytest.fixture
def converse_standin(settings, monkeypatch) -> ConverseStandin:
    standin, server = start_standin()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSTANDIN")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "standin-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    settings.NOTES_BEDROCK_ENDPOINT_URL = standin.url
    settings.NOTES_BEDROCK_REGION = "ap-northeast-1"
    settings.NOTES_BEDROCK_MODEL_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"
    settings.NOTES_BEDROCK_TIMEOUT_SECONDS = 30.0
    yield standin
    standin.release.set()
    server.shutdown()
    server.server_close()
