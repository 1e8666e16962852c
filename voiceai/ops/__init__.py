"""Operating the app: the launcher (``python -m voiceai.ops.serve``), draining
on SIGTERM, liveness/readiness, Prometheus metrics and their CloudWatch
publisher. The domain layers import only ``metrics`` (the metric objects)."""
