"""A tiny OpenAI-compatible chat server on 127.0.0.1 for tests (behaviour set per instance)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    """``mode``: ok | error500 | slow | malformed | empty | flaky (500 then ok)."""

    def __init__(self, mode: str = "ok", delay: float = 0.0):
        self.mode = mode
        self.delay = delay
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests += 1
                if server.delay:
                    time.sleep(server.delay)
                mode = server.mode
                if mode == "flaky":
                    mode = "error500" if server.requests == 1 else "ok"
                if mode == "error500":
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"boom")
                    return
                if mode == "slow":
                    time.sleep(5)
                if mode == "malformed":
                    payload = b"{not json"
                else:
                    user = body["messages"][-1]["content"]
                    chosen = user.split("then chose: ")[-1].split("\n")[0]
                    content = "" if mode == "empty" else json.dumps(
                        {"rationale": f"They keep buying this kind of product, so {chosen} "
                                      "fits their routine and taste."})
                    payload = json.dumps({"choices": [{"message": {"role": "assistant",
                                                                   "content": content}}],
                                          "usage": {"completion_tokens": 17}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
