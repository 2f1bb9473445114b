"""A real webhook receiver on 127.0.0.1 for the notification tests (no mocks: a real HTTP server)."""

from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """A webhook on 127.0.0.1: records every request; `fail` answers 500 that many times, `stall` holds the
    answer until released."""

    def __init__(self) -> None:
        self.got: list[dict] = []
        self.fail = 0
        self.failed = 0  # how many requests were answered 500
        self.flaky: random.Random | None = None  # set: 30% of answers are 500, 10% stall 0.3 s first
        self.stall = threading.Event()
        self.stall.set()
        rec = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                rec.got.append(body)
                rec.stall.wait(30)
                code = 500 if rec.fail > 0 else 200
                rec.fail -= 1
                if rec.flaky is not None:
                    if rec.flaky.random() < 0.1:
                        time.sleep(0.3)
                    code = 500 if rec.flaky.random() < 0.3 else code
                rec.failed += code != 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/s3cr3t-token"

    def keys(self) -> list[str]:
        """Every key received, in order (a batch message carries several)."""
        return [k for g in self.got for k in (g["keys"] if "keys" in g else [g["key"]])]

    def close(self) -> None:
        self.stall.set()
        self.server.shutdown()
