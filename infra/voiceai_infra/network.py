"""The VPC and the security groups that fence each tier.

Three subnet tiers across (at least) two AZs: public for the ALB and NAT
gateways only, private-with-egress for the tasks (they reach Amazon
Transcribe in other regions through NAT), isolated for PostgreSQL and Redis
(no route to the internet at all).
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

APP_PORT = 8000  # settings.PORT's default; the container listens here
POSTGRES_PORT = 5432
REDIS_PORT = 6379


class Network(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)

        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.40.0.0/16"),
            max_azs=3,
            # One NAT gateway per AZ: losing an AZ must not cut the other
            # AZs' tasks off from Transcribe.
            nat_gateways=None,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="app", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20),
                ec2.SubnetConfiguration(name="data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24),
            ],
            gateway_endpoints={
                # Audio to S3 stays on the AWS network and costs no NAT traffic.
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
            },
        )
        self.vpc.add_flow_log("FlowLog", traffic_type=ec2.FlowLogTrafficType.REJECT)

        self.alb_sg = ec2.SecurityGroup(
            self, "AlbSg", vpc=self.vpc, description="VoiceAI ALB: HTTPS (and HTTP for the redirect) from anywhere"
        )
        self.alb_sg.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS")
        self.alb_sg.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(80), "HTTP, redirected to HTTPS")

        self.app_sg = ec2.SecurityGroup(self, "AppSg", vpc=self.vpc, description="VoiceAI tasks: only from the ALB")
        self.app_sg.add_ingress_rule(self.alb_sg, ec2.Port.tcp(APP_PORT), "ALB to app")

        self.db_sg = ec2.SecurityGroup(
            self, "DbSg", vpc=self.vpc, description="VoiceAI PostgreSQL: only from the tasks", allow_all_outbound=False
        )
        self.db_sg.add_ingress_rule(self.app_sg, ec2.Port.tcp(POSTGRES_PORT), "app to PostgreSQL")

        self.redis_sg = ec2.SecurityGroup(
            self, "RedisSg", vpc=self.vpc, description="VoiceAI Redis: only from the tasks", allow_all_outbound=False
        )
        self.redis_sg.add_ingress_rule(self.app_sg, ec2.Port.tcp(REDIS_PORT), "app to Redis")
