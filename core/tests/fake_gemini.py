"""A fake Gemini API on loopback, for the real google-genai client to talk to.

It speaks the REST endpoints the client calls for the Gemini Developer API:

    POST {prefix}/{version}/models/{model}:generateContent
    POST {prefix}/{version}/models/{model}:batchEmbedContents

    with FakeGemini(api_key="test-key") as fake:
        fake.answer({"explanation": "...", "concluded_label": "B"})   # queued answers, in order
        fake.answer("{not json")                                      # any text, as it is
        fake.fail(429)                                                # the next request gets 429
        fake.fail(500, times=3)                                       # a burst of 500s
        fake.delay(2.0)                                               # the next one answers late
        ... point GEMINI_BASE_URL at fake.base_url ...
        fake.requests                                                 # everything received

Faults (`fail`, `delay`) apply to the next requests of any kind, in the order they were
scripted, before answers. A generateContent with no answer queued gets a 500 saying so.
Embeddings are deterministic (a function of the text) and deliberately not unit length, like
gemini-embedding-001's below 3072 dimensions. The server checks the `x-goog-api-key` header (403
when it differs) and that no batch holds more than 100 texts (400, as the API answers, and the
breach is kept in `violations`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = re.compile(r"^(?P<prefix>.*?)/(?P<version>v1(?:alpha|beta)?)/models/(?P<model>[^/:]+)"
                  r":(?P<method>[A-Za-z]+)$")
MAX_BATCH = 100
STATUS_NAMES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict
    prefix: str = ""
    version: str = ""
    model: str = ""
    action: str = ""  # generateContent, batchEmbedContents


def fake_vector(text: str, dimension: int) -> list[float]:
    """Deterministic (a function of the text), and not of unit length."""
    values, counter = [], 0
    while len(values) < dimension:
        digest = hashlib.blake2b(f"{counter}:{text}".encode(), digest_size=64).digest()
        values.extend(v / 2**31 * 0.1 for v in struct.unpack("<16i", digest))
        counter += 1
    return values[:dimension]


class FakeGemini:
    def __init__(self, *, api_key: str = "test-key", tokens_per_answer: int = 120,
                 tokens_per_text: int = 8):
        self.api_key = api_key
        self.tokens_per_answer, self.tokens_per_text = tokens_per_answer, tokens_per_text
        # Answer embeddings of this many dimensions whatever was asked (None: as asked).
        self.embedding_dimension: int | None = None
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self._faults: deque[tuple[str, float]] = deque()
        self._answers: deque[str] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        # Stopping never waits for a request still sleeping out a scripted delay.
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    # --- scripting ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def answer(self, *answers: str | dict) -> None:
        """Queue generateContent answers: a dict is sent as JSON text, a str as it is."""
        with self._lock:
            self._answers.extend(a if isinstance(a, str) else json.dumps(a) for a in answers)

    def fail(self, status: int, *, times: int = 1) -> None:
        with self._lock:
            self._faults.extend([("status", status)] * times)

    def delay(self, seconds: float, *, times: int = 1) -> None:
        """The next requests are answered (normally) only after `seconds`."""
        with self._lock:
            self._faults.extend([("delay", seconds)] * times)

    def of(self, action: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.action == action]

    @property
    def pending_answers(self) -> int:
        return len(self._answers)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeGemini:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- serving --------------------------------------------------------------------------

    def _respond(self, request: RecordedRequest) -> tuple[int, dict]:
        with self._lock:
            self.requests.append(request)
            fault = self._faults.popleft() if self._faults else None
        if fault and fault[0] == "delay":
            time.sleep(fault[1])
        elif fault:
            return self._error(int(fault[1]), f"scripted fault {fault[1]}")
        if request.headers.get("x-goog-api-key") != self.api_key:
            return self._error(403, "API key not valid (fake Gemini).")
        if request.action == "generateContent":
            return self._generate(request)
        if request.action == "batchEmbedContents":
            return self._embed(request)
        return self._error(404, f"fake Gemini does not serve {request.action}")

    def _generate(self, request: RecordedRequest) -> tuple[int, dict]:
        with self._lock:
            text = self._answers.popleft() if self._answers else None
        if text is None:
            return self._error(500, "fake Gemini: no answer scripted for this request")
        return 200, {
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": self.tokens_per_answer // 2,
                              "candidatesTokenCount": self.tokens_per_answer
                              - self.tokens_per_answer // 2,
                              "totalTokenCount": self.tokens_per_answer},
            "modelVersion": request.model,
        }

    def _embed(self, request: RecordedRequest) -> tuple[int, dict]:
        items = request.body.get("requests", [])
        if len(items) > MAX_BATCH:
            self.violations.append(f"{len(items)} texts in one batchEmbedContents")
            return self._error(400, f"at most {MAX_BATCH} requests can be in one batch")
        embeddings = []
        for item in items:
            text = "".join(part.get("text", "") for part in item["content"]["parts"])
            dimension = (self.embedding_dimension or item.get("outputDimensionality")
                         or 3072)
            embeddings.append({"values": fake_vector(text, dimension)})
        return 200, {"embeddings": embeddings,
                     "usageMetadata": {"promptTokenCount": self.tokens_per_text * len(items),
                                       "totalTokenCount": self.tokens_per_text * len(items)}}

    @staticmethod
    def _error(status: int, message: str) -> tuple[int, dict]:
        return status, {"error": {"code": status, "message": message,
                                  "status": STATUS_NAMES.get(status, "UNKNOWN")}}

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body in one segment, sent at once: otherwise each response waits out
            # a delayed ACK (~40 ms) on loopback.
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def handle(self):
                # The client may have given up waiting (a scripted delay past its timeout).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    super().handle()

            def do_POST(self):  # noqa: N802  (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_unparsed": raw.decode(errors="replace")}
                match = PATH.match(self.path.split("?", 1)[0])
                request = RecordedRequest(
                    method="POST", path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()}, body=body,
                    **({"prefix": match["prefix"], "version": match["version"],
                        "model": match["model"], "action": match["method"]} if match else {}))
                self.reply(*fake._respond(request))

            def reply(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format, *args):  # quiet: the requests are recorded instead
                pass

        return Handler
