"""Deployment settings read from CDK context (``-c key=value`` or cdk.json).

Everything that differs between deployments is here, validated once, so a
bad value fails the synth with the key's name instead of producing a
template that fails half-way through a CloudFormation deploy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from constructs import Node

# Japan first: the design's primary region, a replica region that keeps the
# medical data in the country, and the design's Transcribe spread.
DEFAULT_REGION = "ap-northeast-1"
DEFAULT_REPLICA_REGION = "ap-northeast-3"
DEFAULT_TRANSCRIBE_REGIONS = ("ap-northeast-1", "ap-southeast-1", "us-west-2")

_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_CERT_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[A-Za-z0-9-]+$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class ConfigError(ValueError):
    """A context value is missing or malformed; the message names the key."""


@dataclass(frozen=True)
class DeploymentConfig:
    region: str
    account: str | None
    replica_region: str
    # None means "ask at deploy time": the stack then declares a
    # CloudFormation parameter instead of baking a value into the template.
    certificate_arn: str | None
    domain_name: str | None
    transcribe_regions: tuple[str, ...]
    # The per-region concurrent-stream quota the engine-quota alarm is measured against.
    transcribe_stream_quota: int
    ecr_repository: str
    image_tag: str
    alarm_email: str | None
    min_tasks: int
    max_tasks: int
    # Seconds the ALB keeps a deregistering task's live sockets open before
    # ECS sends SIGTERM (see docs/deployment.md, "Draining a task").
    deregistration_delay_seconds: int
    # Seconds between SIGTERM and SIGKILL; 120 is Fargate's maximum.
    stop_timeout_seconds: int

    @classmethod
    def from_context(cls, node: Node) -> DeploymentConfig:
        def get(key: str, default: object = None) -> object:
            value = node.try_get_context(key)
            return default if value is None or value == "" else value

        region = _region("region", get("region", DEFAULT_REGION))
        replica_region = _region("replicaRegion", get("replicaRegion", DEFAULT_REPLICA_REGION))
        if replica_region == region:
            raise ConfigError("replicaRegion must differ from region (cross-region replication)")
        account = get("account")
        if account is not None and not re.fullmatch(r"\d{12}", str(account)):
            raise ConfigError(f"account must be a 12-digit AWS account id, got {account!r}")

        cert = get("certificateArn")
        if cert is not None and not _CERT_ARN.match(str(cert)):
            raise ConfigError(f"certificateArn must be an ACM certificate ARN, got {cert!r}")
        domain = get("domainName")
        if domain is not None and not _DOMAIN.match(str(domain)):
            raise ConfigError(f"domainName must be a lower-case DNS name, got {domain!r}")

        raw_regions = get("transcribeRegions", ",".join(DEFAULT_TRANSCRIBE_REGIONS))
        items = raw_regions if isinstance(raw_regions, list) else str(raw_regions).split(",")
        transcribe_regions = tuple(_region("transcribeRegions", r.strip()) for r in items if str(r).strip())
        if not transcribe_regions:
            raise ConfigError("transcribeRegions must name at least one region")

        min_tasks = _int("minTasks", get("minTasks", 2), minimum=1)
        max_tasks = _int("maxTasks", get("maxTasks", 20), minimum=min_tasks)
        stop_timeout = _int("stopTimeoutSeconds", get("stopTimeoutSeconds", 120), minimum=2)
        if stop_timeout > 120:
            raise ConfigError("stopTimeoutSeconds must be at most 120 (the Fargate maximum)")

        return cls(
            region=region,
            account=str(account) if account is not None else None,
            replica_region=replica_region,
            certificate_arn=str(cert) if cert is not None else None,
            domain_name=str(domain) if domain is not None else None,
            transcribe_regions=transcribe_regions,
            transcribe_stream_quota=_int("transcribeStreamQuota", get("transcribeStreamQuota", 25), minimum=1),
            ecr_repository=str(get("ecrRepository", "voiceai")),
            image_tag=str(get("imageTag", "latest")),
            alarm_email=str(get("alarmEmail")) if get("alarmEmail") is not None else None,
            min_tasks=min_tasks,
            max_tasks=max_tasks,
            deregistration_delay_seconds=_int(
                "deregistrationDelaySeconds", get("deregistrationDelaySeconds", 120), minimum=0
            ),
            stop_timeout_seconds=stop_timeout,
        )


def _region(key: str, value: object) -> str:
    text = str(value)
    if not _REGION.match(text):
        raise ConfigError(f"{key} must be an AWS region name like ap-northeast-1, got {text!r}")
    return text


def _int(key: str, value: object, *, minimum: int) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise ConfigError(f"{key} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{key} must be at least {minimum}, got {number}")
    return number
