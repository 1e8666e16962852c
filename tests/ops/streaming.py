"""Helpers for the ops tests that stream to real server processes."""

from __future__ import annotations

import asyncio
import json
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.servers import METRICS_TOKEN


def scrape(base_url: str) -> dict[tuple[str, frozenset], float]:
    """GET /metrics → {(sample name, frozenset(labels)): value}."""
    request = urllib.request.Request(f"{base_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    samples: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def read_until(ws, kind: str, sink: list, seconds: float = 15.0, **fields) -> dict:
    """Read JSON messages into ``sink`` until one of type ``kind`` (whose
    ``fields`` match, if given); returns it."""
    async with asyncio.timeout(seconds):
        while True:
            message = json.loads(await ws.recv())
            sink.append(message)
            if message["type"] == kind and all(message.get(k) == v for k, v in fields.items()):
                return message


def finals(messages: list[dict]) -> list[str]:
    return [m["segment_id"] for m in messages if m["type"] == "Transcript" and m["is_final"]]
