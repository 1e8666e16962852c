"""A local stand-in for Amazon Bedrock Runtime's Converse API: a small real
HTTP server speaking its wire protocol (``POST /model/{modelId}/converse``,
JSON in and out, errors as an HTTP status with ``x-amzn-errortype``), so
boto3's ``bedrock-runtime`` client is tested unchanged, pointed at it with
``endpoint_url``. Nothing is mocked inside the process under test.

Scenarios are queued per request (``script``); with none queued it answers
``success``. A success echoes the transcript deterministically: every line
``[seg-N] role: text`` becomes one sentence citing ``seg-N`` — patients' and
unknown speakers' lines under subjective, clinicians' under objective —
unless ``answer_text`` says exactly what the model answers.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

_LINE = re.compile(r"^\[(?P<id>[^\]]+)\] (?P<role>\w+): (?P<text>.*)$")


@dataclass
class Scenario:
    kind: str = "success"  # success | throttle | malformed | slow | error500 | denied
    answer_text: str | None = None
    delay: float = 0.0


@dataclass
class RecordedRequest:
    path: str
    model_id: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes
    scenario: Scenario


@dataclass
class ConverseStandin:
    url: str = ""
    script: list[Scenario] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def next_scenario(self) -> Scenario:
        return self.script.pop(0) if self.script else Scenario()


def echo_answer(body: dict[str, Any]) -> str:
    text = "".join(block.get("text", "") for m in body.get("messages", []) for block in m.get("content", []))
    sections: dict[str, list[dict[str, Any]]] = {"subjective": [], "objective": [], "assessment": [], "plan": []}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            key = "objective" if match["role"] == "clinician" else "subjective"
            sections[key].append({"text": match["text"], "evidence": [match["id"]]})
    return json.dumps(sections, ensure_ascii=False)


def _handler(standin: ConverseStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the transcript is in the body

        def _send(self, status: int, body: dict[str, Any], error_type: str | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", "standin-request")
            if error_type:
                self.send_header(
                    "x-amzn-errortype", f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"
                )
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            match = re.fullmatch(r"/model/(?P<model>[^/]+)/converse", self.path)
            if match is None:
                self._send(404, {"message": "unknown operation"}, "UnknownOperationException")
                return
            body = json.loads(raw or b"{}")
            scenario = standin.next_scenario()
            standin.requests.append(
                RecordedRequest(
                    path=self.path,
                    model_id=unquote(match["model"]),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    raw=raw,
                    scenario=scenario,
                )
            )
            if scenario.kind == "slow":
                standin.release.wait(scenario.delay or 30.0)
            if scenario.kind == "throttle":
                self._send(
                    429, {"message": "Too many requests, please wait before trying again."}, "ThrottlingException"
                )
                return
            if scenario.kind == "error500":
                self._send(500, {"message": "internal"}, "InternalServerException")
                return
            if scenario.kind == "denied":
                self._send(403, {"message": "no access to the model"}, "AccessDeniedException")
                return
            text = scenario.answer_text
            if scenario.kind == "malformed":
                text = "Here is your SOAP note: Subjective - the patient has a headache."
            if text is None:
                text = echo_answer(body)
            # The client may have given up (the timeout case).
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._send(
                    200,
                    {
                        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                        "stopReason": "end_turn",
                        "usage": {"inputTokens": len(raw) // 4, "outputTokens": len(text) // 4,
                                  "totalTokens": (len(raw) + len(text)) // 4},
                        "metrics": {"latencyMs": 5},
                    },
                )  # fmt: skip

    return Handler


def start_standin() -> tuple[ConverseStandin, ThreadingHTTPServer]:
    standin = ConverseStandin()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(standin))
    server.daemon_threads = True
    standin.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, name="converse-standin", daemon=True).start()
    return standin, server
