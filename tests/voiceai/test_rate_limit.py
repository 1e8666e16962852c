"""The per-caller call counter (voiceai/rate_limit.py), in Redis and in
process: the limit per window, a fresh budget in the next window, callers
counted apart."""

import uuid

import pytest
from django.conf import settings as django_settings

from voiceai.rate_limit import RateLimit, RateLimited, rate_limit_hit


@pytest.fixture(params=["redis", "in-process"])
def backend(request, settings):
    if request.param == "redis":
        if not django_settings.REDIS_URL:
            pytest.skip("needs REDIS_URL")
    else:
        settings.REDIS_URL = ""
    return request.param


def test_it_refuses_past_the_limit_until_the_next_window(backend):
    rule = RateLimit(scope=f"test-{uuid.uuid4().hex}", limit=2, window_seconds=60)
    at = 1_020_020.0  # 20 s into a window (1_020_000 = 17_000 windows)
    rate_limit_hit(rule, "key-a", now=at)
    rate_limit_hit(rule, "key-a", now=at + 1)
    with pytest.raises(RateLimited) as refused:
        rate_limit_hit(rule, "key-a", now=at + 2)
    assert refused.value.details["retry_after"] == 38
    rate_limit_hit(rule, "key-b", now=at + 2)  # another caller has its own budget
    rate_limit_hit(rule, "key-a", now=at + 40)  # the next window
