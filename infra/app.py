"""CDK entry point: ``python -m infra.app`` (what ``make infra-synth`` runs).

No AWS account is needed to synthesize: the stacks are account-agnostic
unless ``-c account=...`` is given (or CDK_DEFAULT_ACCOUNT is set by the
cdk CLI). Context keys are listed in infra/voiceai_infra/config.py and
docs/deployment.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from infra.voiceai_infra.config import DeploymentConfig
from infra.voiceai_infra.stack import VoiceAiStack
from infra.voiceai_infra.storage import ReplicaStack

DEFAULT_OUTDIR = Path(__file__).resolve().parent / "cdk.out"


def build_app(context: dict[str, Any] | None = None, outdir: str | os.PathLike[str] | None = None) -> cdk.App:
    app = cdk.App(context=context or None, outdir=str(outdir or os.environ.get("CDK_OUTDIR") or DEFAULT_OUTDIR))
    config = DeploymentConfig.from_context(app.node)
    account = config.account or os.environ.get("CDK_DEFAULT_ACCOUNT")

    replica = ReplicaStack(
        app,
        "VoiceAiReplica",
        env=cdk.Environment(account=account, region=config.replica_region),
        description="VoiceAI audio replica bucket (cross-region replication target)",
    )
    primary = VoiceAiStack(
        app,
        "VoiceAi",
        config=config,
        env=cdk.Environment(account=account, region=config.region),
        description="VoiceAI: ALB + ECS Fargate + RDS PostgreSQL + ElastiCache Redis + S3",
    )
    # The replica bucket must exist before replication can be configured.
    primary.add_stack_dependency(replica)
    return app


def main() -> None:
    build_app().synth()


if __name__ == "__main__":
    main()
