"""The metric-name extractor must itself be right, or the coverage tests prove nothing."""

from tests.ops.promql import documented_metrics, metric_names


def test_it_extracts_metric_names_and_skips_functions_labels_and_durations() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(voiceai_frame_to_transcript_seconds_bucket{job="voiceai"}[5m])))'
        ' > 1e3 and on (job, instance) up{job="a:b"} offset 5m'
    )
    assert metric_names(expr) == {"voiceai_frame_to_transcript_seconds_bucket", "up"}


def test_it_sees_both_sides_of_a_binary_operation() -> None:
    assert metric_names("process_resident_memory_bytes / on (job, instance) voiceai_memory_limit_bytes > 0.8") == {
        "process_resident_memory_bytes",
        "voiceai_memory_limit_bytes",
    }


def test_it_reads_the_documented_metric_table() -> None:
    metrics = documented_metrics()
    assert metrics["voiceai_frame_to_transcript_seconds"] == "histogram"
    assert metrics["voiceai_live_sessions"] == "gauge"
    assert "up" in metrics
