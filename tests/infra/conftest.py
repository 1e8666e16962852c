"""One synth per test session: the CDK app is built twice in one process —
with context (the values an operator passes with ``-c``) and without (the
template then asks for them as CloudFormation parameters). Neither needs an
AWS account or network access."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# jsii prints a banner on every start under Node 20 (end-of-life for jsii
# since 2026-10-30; synth still works); it says nothing about this code.
# Must be set before aws_cdk is imported.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

CERT_ARN = "arn:aws:acm:ap-northeast-1:123456789012:certificate/0f1e2d3c-aaaa-bbbb-cccc-1234567890ab"
DOMAIN = "voice.clinic-example.jp"
CONTEXT = {"certificateArn": CERT_ARN, "domainName": DOMAIN, "alarmEmail": "oncall@clinic-example.jp"}


@dataclass(frozen=True)
class Synth:
    outdir: Path
    primary: dict[str, Any]  # the VoiceAi template (CloudFormation JSON)
    replica: dict[str, Any]  # the VoiceAiReplica template
    manifest_stacks: dict[str, Any]  # stack name -> its cloud-assembly artifact properties


def _synth(outdir: Path, context: dict[str, Any] | None) -> Synth:
    from infra.app import build_app

    assembly = build_app(context, outdir=outdir).synth()
    return Synth(
        outdir=outdir,
        primary=assembly.get_stack_by_name("VoiceAi").template,
        replica=assembly.get_stack_by_name("VoiceAiReplica").template,
        manifest_stacks={s.stack_name: s for s in assembly.stacks},
    )


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return _synth(tmp_path_factory.mktemp("cdk-out"), CONTEXT)


@pytest.fixture(scope="session")
def synth_without_context(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return _synth(tmp_path_factory.mktemp("cdk-out-params"), None)
