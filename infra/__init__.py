"""The AWS deployment of VoiceAI as a CDK app (see docs/deployment.md)."""
