"""The audio/transcript bucket, its cross-region replica, and the ALB log bucket.

Layout is ``{clinic_id}/{session_id}/...`` (sessions/storage_keys.py). The
bucket's default key encrypts whatever carries no key of its own; a clinic
whose row has ``kms_key_id`` gets its objects encrypted under its own key
(operators create that key per tenant and tag it ``voiceai:clinic``).
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

# Tag key operators put on each clinic's KMS key; the task and replication
# roles may use exactly the keys that carry it (see docs/deployment.md).
CLINIC_KEY_TAG = "voiceai:clinic"
REPLICA_KEY_ALIAS = "alias/voiceai-audio-replica"
REPLICATION_RULE_ID = "to-replica-region"
# Deleted or overwritten objects (retention purge, erasure) stay recoverable
# this long as noncurrent versions, then are gone for good — in both regions.
NONCURRENT_DAYS = 30


def replica_bucket_name(replica_region: str) -> str:
    """Deterministic, so the primary stack can point at the replica without
    a cross-region stack reference (same account, different region)."""
    return f"voiceai-audio-replica-{Aws.ACCOUNT_ID}-{replica_region}"


def _lifecycle_rules() -> list[s3.LifecycleRule]:
    return [
        s3.LifecycleRule(
            id="intelligent-tiering",
            # All of it: audio is read rarely after the consultation, but
            # exports and erasure must read it instantly, so only the
            # automatic (instant-retrieval) tiers are used — no archive opt-in.
            transitions=[
                s3.Transition(storage_class=s3.StorageClass.INTELLIGENT_TIERING, transition_after=Duration.days(0))
            ],
        ),
        s3.LifecycleRule(
            id="expire-noncurrent-and-abort-uploads",
            noncurrent_version_expiration=Duration.days(NONCURRENT_DAYS),
            abort_incomplete_multipart_upload_after=Duration.days(2),
        ),
        s3.LifecycleRule(id="remove-expired-delete-markers", expired_object_delete_marker=True),
    ]


class ReplicaStack(Stack):
    """The replica bucket in the second region (deployed before the primary)."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.key = kms.Key(
            self,
            "ReplicaKey",
            alias=REPLICA_KEY_ALIAS,
            enable_key_rotation=True,
            description="VoiceAI audio replica (all clinics) — see docs/deployment.md",
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.bucket = s3.Bucket(
            self,
            "ReplicaBucket",
            bucket_name=replica_bucket_name(self.region),
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=_lifecycle_rules(),
            removal_policy=RemovalPolicy.RETAIN,
        )


class AudioStorage(Construct):
    """The primary bucket, its key, and replication to the replica region."""

    def __init__(self, scope: Construct, construct_id: str, *, replica_region: str) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)

        self.key = kms.Key(
            self,
            "BucketKey",
            enable_key_rotation=True,
            description="VoiceAI audio/transcripts default key (clinics without their own key)",
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.bucket = s3.Bucket(
            self,
            "AudioBucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,  # replication needs it; also the undo window for purges
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=_lifecycle_rules(),
            removal_policy=RemovalPolicy.RETAIN,
        )

        self.replica_bucket_name = replica_bucket_name(replica_region)
        replica_bucket_arn = f"arn:{Aws.PARTITION}:s3:::{self.replica_bucket_name}"
        replica_key_alias_arn = f"arn:{Aws.PARTITION}:kms:{replica_region}:{Aws.ACCOUNT_ID}:{REPLICA_KEY_ALIAS}"
        self.replication_role = iam.Role(
            self,
            "ReplicationRole",
            assumed_by=iam.ServicePrincipal("s3.amazonaws.com"),
            description="S3 cross-region replication of the VoiceAI audio bucket",
        )
        role = self.replication_role
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetReplicationConfiguration", "s3:ListBucket"], resources=[self.bucket.bucket_arn]
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "s3:GetObjectVersionForReplication",
                    "s3:GetObjectVersionAcl",
                    "s3:GetObjectVersionTagging",
                ],
                resources=[self.bucket.arn_for_objects("*")],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"],
                resources=[f"{replica_bucket_arn}/*"],
            )
        )
        # Reading the source: the bucket's key, and the clinics' own keys
        # (found by tag, since operators create them after this stack).
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt"],
                resources=[self.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}},
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt"],
                resources=[f"arn:{Aws.PARTITION}:kms:{stack.region}:{Aws.ACCOUNT_ID}:key/*"],
                conditions={
                    "StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"},
                    "Null": {f"aws:ResourceTag/{CLINIC_KEY_TAG}": "false"},
                },
            )
        )
        # Writing the replica: only the key that carries the replica alias.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:Encrypt", "kms:GenerateDataKey"],
                resources=[f"arn:{Aws.PARTITION}:kms:{replica_region}:{Aws.ACCOUNT_ID}:key/*"],
                conditions={
                    "StringEquals": {"kms:ViaService": f"s3.{replica_region}.amazonaws.com"},
                    "ForAnyValue:StringEquals": {"kms:ResourceAliases": REPLICA_KEY_ALIAS},
                },
            )
        )

        cfn_bucket: s3.CfnBucket = self.bucket.node.default_child  # type: ignore[assignment]
        cfn_bucket.replication_configuration = s3.CfnBucket.ReplicationConfigurationProperty(
            role=role.role_arn,
            rules=[
                s3.CfnBucket.ReplicationRuleProperty(
                    id=REPLICATION_RULE_ID,
                    status="Enabled",
                    priority=1,
                    filter=s3.CfnBucket.ReplicationRuleFilterProperty(prefix=""),
                    # Purges put delete markers; they must reach the replica too.
                    delete_marker_replication=s3.CfnBucket.DeleteMarkerReplicationProperty(status="Enabled"),
                    source_selection_criteria=s3.CfnBucket.SourceSelectionCriteriaProperty(
                        sse_kms_encrypted_objects=s3.CfnBucket.SseKmsEncryptedObjectsProperty(status="Enabled")
                    ),
                    destination=s3.CfnBucket.ReplicationDestinationProperty(
                        bucket=replica_bucket_arn,
                        storage_class="INTELLIGENT_TIERING",
                        encryption_configuration=s3.CfnBucket.EncryptionConfigurationProperty(
                            replica_kms_key_id=replica_key_alias_arn
                        ),
                        # Replication Time Control: 99.99 % of objects within
                        # 15 min, with latency metrics to alarm on.
                        replication_time=s3.CfnBucket.ReplicationTimeProperty(
                            status="Enabled", time=s3.CfnBucket.ReplicationTimeValueProperty(minutes=15)
                        ),
                        metrics=s3.CfnBucket.MetricsProperty(
                            status="Enabled", event_threshold=s3.CfnBucket.ReplicationTimeValueProperty(minutes=15)
                        ),
                    ),
                )
            ],
        )

        # ALB access logs: ALB cannot write to SSE-KMS buckets, hence a
        # separate SSE-S3 bucket. Contains client IPs and paths, no audio.
        self.log_bucket = s3.Bucket(
            self,
            "AlbLogBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=Duration.days(400))],
            removal_policy=RemovalPolicy.RETAIN,
        )
