"""A loopback stand-in for SendGrid's Mail Send endpoint, scriptable per request, recording every
personalization it *processed*. For fault tests (429, 5xx, timeouts, dropped connections, kill -9).

Actions (one per request, in order; then "ok"):
  "ok"       record, answer 202 with X-Message-Id
  "429"      answer 429 with X-RateLimit-Reset one second ahead (not recorded)
  "500" / "503"  answer 500 / 503, as SendGrid itself does when it did not take the request (not recorded)
  "502" / "504"  answer 502 / 504, as a gateway does when it got no answer (not recorded)
  "accept-504"   record (SendGrid took it), then answer 504, as a gateway that gave up waiting does
  "retry-after-date"  answer 429 with `Retry-After: <HTTP date>` (stub.retry_after_date, default
                 in 2099) and no X-RateLimit-Reset (not recorded)
  "dribble"      record, then send a 202 answer one byte every `dribble` seconds
  "401"      answer 401, as SendGrid does for a bad API key (not recorded)
  "timeout"  record, then answer only after `slow` seconds (the client has given up: uncertain)
  "drop"     read the request, close the connection without an answer (not recorded)
  "kill-before" / "kill-after-record" / "kill-after-response"
             call `stub.kill()` (e.g. SIGKILL the sending process) at that point
  callables  called with the parsed body; their return value is the action
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Action = str | Callable[[dict[str, Any]], str]


class StubSendGrid:
    def __init__(self, script: list[Action] | None = None, slow: float = 1.5, delay: float = 0.0,
                 dribble: float = 2.0) -> None:
        self.script = list(script or [])
        self.slow, self.delay, self.dribble = slow, delay, dribble
        self.retry_after_date = "Thu, 31 Dec 2099 23:59:59 GMT"
        self.recorded: list[str] = []  # one address per processed personalization
        self.arrivals: list[float] = []  # time.monotonic() of every request's arrival
        self.custom_args: list[dict[str, str]] = []  # of every processed personalization
        self.requests = 0
        self.authorizations: list[str] = []  # the Authorization header of every answered request
        self.lock = threading.Lock()
        self.kill: Callable[[], None] = lambda: None
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                arrived = time.monotonic()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.arrivals.append(arrived)
                    stub.requests += 1
                    action: Action = stub.script.pop(0) if stub.script else "ok"
                if callable(action):
                    action = action(body)
                if stub.delay:
                    time.sleep(stub.delay)
                emails = [p["to"][0]["email"] for p in body["personalizations"]]
                if action == "kill-before":
                    stub.kill()
                    action = "drop"
                if action == "kill-after-record":
                    with stub.lock:
                        stub.recorded.extend(emails)
                    stub.kill()
                    action = "drop"
                if action in ("ok", "timeout", "kill-after-response", "accept-504", "dribble"):
                    with stub.lock:
                        stub.recorded.extend(emails)
                        stub.custom_args.extend(p.get("custom_args", {}) for p in body["personalizations"])
                if action == "dribble":
                    answer = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nX-Message-Id: dribbled\r\n\r\n"
                    try:
                        for i in range(len(answer)):
                            self.wfile.write(answer[i:i + 1])
                            self.wfile.flush()
                            time.sleep(stub.dribble)
                    except OSError:
                        pass  # the client gave up
                    self.close_connection = True
                    return
                if action == "timeout":
                    time.sleep(stub.slow)
                if action == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                status = {"ok": 202, "timeout": 202, "kill-after-response": 202, "429": 429, "500": 500,
                          "503": 503, "502": 502, "504": 504, "accept-504": 504, "retry-after-date": 429,
                          "401": 401}[action]
                self.send_response(status)
                if action == "429":
                    self.send_header("X-RateLimit-Reset", str(int(time.time()) + 1))
                if action == "retry-after-date":
                    self.send_header("Retry-After", stub.retry_after_date)
                if status == 202:
                    self.send_header("X-Message-Id", f"stub-{stub.requests}")
                with stub.lock:
                    stub.authorizations.append(self.headers.get("Authorization", ""))
                self.send_header("Content-Length", "0")
                try:
                    self.end_headers()
                    self.wfile.flush()
                except OSError:
                    pass  # the client is gone
                if action == "kill-after-response":
                    stub.kill()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubSendGrid:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
