"""The primary-region stack: network, data, storage, service, alarms."""

from __future__ import annotations

from aws_cdk import CfnOutput, CfnParameter, Stack, Tags
from constructs import Construct

from .alarms import Alarms
from .config import DeploymentConfig
from .data import Cache, Database
from .network import Network
from .service import WebService
from .storage import AudioStorage


class VoiceAiStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        Tags.of(self).add("project", "voiceai")

        # Either baked in from context, or asked for at deploy time.
        certificate_arn = (
            config.certificate_arn
            or CfnParameter(
                self,
                "CertificateArn",
                type="String",
                allowed_pattern=r"arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[A-Za-z0-9-]+",
                description="ACM certificate for the public host name (HTTPS listener)",
            ).value_as_string
        )
        domain_name = (
            config.domain_name
            or CfnParameter(
                self,
                "DomainName",
                type="String",
                allowed_pattern=r"[a-z0-9.-]+",
                description="Public host name (ALLOWED_HOSTS, CSRF_TRUSTED_ORIGINS, WS_ALLOWED_ORIGINS)",
            ).value_as_string
        )

        self.network = Network(self, "Network")
        self.storage = AudioStorage(self, "Storage", replica_region=config.replica_region)
        self.database = Database(self, "Database", network=self.network)
        self.cache = Cache(self, "Cache", network=self.network)
        self.web = WebService(
            self,
            "Web",
            config=config,
            network=self.network,
            storage=self.storage,
            database=self.database,
            cache=self.cache,
            certificate_arn=certificate_arn,
            domain_name=domain_name,
        )
        self.alarms = Alarms(
            self,
            "Alarms",
            config=config,
            web=self.web,
            database=self.database,
            cache=self.cache,
            storage=self.storage,
        )

        CfnOutput(
            self,
            "LoadBalancerDns",
            value=self.web.alb.load_balancer_dns_name,
            description="Point the public host name (CNAME/alias) here",
        )
        CfnOutput(self, "AudioBucketName", value=self.storage.bucket.bucket_name)
        CfnOutput(self, "AlarmTopicArn", value=self.alarms.topic.topic_arn)
        CfnOutput(
            self,
            "TaskRoleArn",
            value=self.web.task_role.role_arn,
            description="Name this role in each clinic key's key policy",
        )
