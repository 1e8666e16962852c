"""PostgreSQL (the system of record) and Redis (live state only).

PostgreSQL holds everything that must survive: clinics, sessions, finals,
audit. Multi-AZ gives a synchronous standby (AZ loss: automatic failover in
one to two minutes, nothing committed lost); automated backups with
transaction logs shipped every five minutes give point-in-time restore —
that is where RPO 5 min comes from.

Redis holds only what is live: channel-layer messages, stream leases,
tokens. A failover loses at most the last moments of that state, which the
leases and the producers' resume-by-acked-offset rebuild; so a daily
snapshot (the design's) is enough and no persistence (AOF) is paid for.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_kms as kms
from aws_cdk import aws_rds as rds
from constructs import Construct

from .network import POSTGRES_PORT, REDIS_PORT, Network

DB_NAME = "voiceai"
DB_USER = "voiceai"
BACKUP_RETENTION_DAYS = 14


class Database(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, network: Network) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self, "Key", enable_key_rotation=True, description="VoiceAI PostgreSQL storage, snapshots and backups"
        )
        self.instance = rds.DatabaseInstance(
            self,
            "Postgres",
            # 15 matches what CI tests against.
            engine=rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_15_17),
            instance_type=ec2.InstanceType.of(ec2.InstanceClass.R6G, ec2.InstanceSize.LARGE),
            vpc=network.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[network.db_sg],
            port=POSTGRES_PORT,
            database_name=DB_NAME,
            # Generated into Secrets Manager; characters that would need
            # escaping in a URL or a shell are left out.
            credentials=rds.Credentials.from_generated_secret(
                DB_USER, exclude_characters=" %+~`#$&*()|[]{}:;<>?!'/@\"\\,="
            ),
            multi_az=True,
            storage_encrypted=True,
            storage_encryption_key=self.key,
            storage_type=rds.StorageType.GP3,
            allocated_storage=100,
            max_allocated_storage=1000,
            backup_retention=Duration.days(BACKUP_RETENTION_DAYS),
            preferred_backup_window="16:00-16:30",  # 01:00 JST, outside clinic hours
            preferred_maintenance_window="sun:17:00-sun:18:00",
            copy_tags_to_snapshot=True,
            deletion_protection=True,
            removal_policy=RemovalPolicy.SNAPSHOT,
            auto_minor_version_upgrade=True,
            cloudwatch_logs_exports=["postgresql"],
            enable_performance_insights=True,
            performance_insight_encryption_key=self.key,
            publicly_accessible=False,
            parameter_group=rds.ParameterGroup(
                self,
                "Params",
                engine=rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_15_17),
                # Only TLS connections (the app's DATABASE_URL asks for sslmode=require).
                parameters={"rds.force_ssl": "1"},
            ),
        )
        assert self.instance.secret is not None  # from_generated_secret always makes one
        self.secret = self.instance.secret


class Cache(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, network: Network) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(self, "Key", enable_key_rotation=True, description="VoiceAI Redis at rest and snapshots")
        subnets = elasticache.CfnSubnetGroup(
            self,
            "Subnets",
            description="VoiceAI Redis (isolated subnets)",
            subnet_ids=network.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids,
        )
        # Cluster mode off, primary + replica in different AZs: the Channels
        # Redis layer speaks to one endpoint, not a Redis Cluster.
        self.group = elasticache.CfnReplicationGroup(
            self,
            "Redis",
            replication_group_description="VoiceAI live state: channel layer, stream leases, tokens",
            engine="redis",
            engine_version="7.1",
            cache_node_type="cache.r6g.large",
            num_cache_clusters=2,
            automatic_failover_enabled=True,
            multi_az_enabled=True,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            at_rest_encryption_enabled=True,
            kms_key_id=self.key.key_id,
            port=REDIS_PORT,
            cache_subnet_group_name=subnets.ref,
            security_group_ids=[network.redis_sg.security_group_id],
            snapshot_retention_limit=1,
            snapshot_window="15:00-16:00",
            preferred_maintenance_window="sun:18:00-sun:19:00",
            auto_minor_version_upgrade=True,
        )
        self.group.apply_removal_policy(RemovalPolicy.DESTROY)  # live state only; see module docstring

    @property
    def url(self) -> str:
        # rediss:// = TLS, which transit_encryption_mode=required demands.
        return f"rediss://{self.group.attr_primary_end_point_address}:{self.group.attr_primary_end_point_port}/0"
