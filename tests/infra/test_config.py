"""Context validation: a bad ``-c key=value`` fails the synth naming the key."""

from __future__ import annotations

from typing import Any

import pytest

import tests.infra.conftest  # noqa: F401  (silences the Node banner before aws_cdk loads)
from infra.voiceai_infra.config import ConfigError, DeploymentConfig


def _config(**context: Any) -> DeploymentConfig:
    import aws_cdk as cdk

    return DeploymentConfig.from_context(cdk.App(context=context or None).node)


def test_it_defaults_to_the_designs_regions_and_task_bounds() -> None:
    config = _config()
    assert config.region == "ap-northeast-1"
    assert config.replica_region == "ap-northeast-3"
    assert config.transcribe_regions == ("ap-northeast-1", "ap-southeast-1", "us-west-2")
    assert (config.min_tasks, config.max_tasks) == (2, 20)
    assert config.certificate_arn is None and config.domain_name is None


def test_it_accepts_transcribe_regions_as_a_comma_list() -> None:
    assert _config(transcribeRegions="ap-northeast-1, ap-northeast-3").transcribe_regions == (
        "ap-northeast-1",
        "ap-northeast-3",
    )


@pytest.mark.parametrize(
    ("context", "key"),
    [
        ({"certificateArn": "arn:aws:iam::123456789012:server-certificate/x"}, "certificateArn"),
        ({"domainName": "Voice.Example.JP"}, "domainName"),
        ({"replicaRegion": "ap-northeast-1"}, "replicaRegion"),
        ({"region": "tokyo"}, "region"),
        ({"transcribeRegions": "ap-northeast-1,mars-1"}, "transcribeRegions"),
        ({"minTasks": 5, "maxTasks": 3}, "maxTasks"),
        ({"stopTimeoutSeconds": 300}, "stopTimeoutSeconds"),
        ({"account": "12345"}, "account"),
        ({"transcribeStreamQuota": "many"}, "transcribeStreamQuota"),
    ],
)
def test_it_rejects_a_bad_context_value_naming_the_key(context: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        _config(**context)
