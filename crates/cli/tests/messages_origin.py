"""A stand-in for a model API: HTTPS, the Anthropic Messages endpoint (`POST /v1/messages`),
plain and streamed (server-sent events), answering only requests that carry the real API key (`x-api-key`, or a bearer token).

Usage: messages_origin.py CERT KEY HOST PORT_FILE REAL_KEY LOG
Writes the port it listens on to PORT_FILE, and one line per request to LOG:
`<method> <path> key=<real|other|none> stream=<bool>`.
"""

import http.server
import json
import os
import ssl
import sys

cert, key, host, port_file, real_key, log_path = sys.argv[1:7]


def message(text):
    return {
        "id": "msg_remit_test",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        # The key travels in `x-api-key` or, from newer SDKs, as a bearer token.
        got = self.headers.get("x-api-key")
        bearer = self.headers.get("authorization", "")
        if got is None and bearer.startswith("Bearer "):
            got = bearer[len("Bearer "):]
        key_seen = "none" if got is None else ("real" if got == real_key else "other")
        stream = bool(body.get("stream"))
        with open(log_path, "a") as log:
            log.write(f"{self.command} {self.path} key={key_seen} stream={stream}\n")
        if self.path != "/v1/messages":
            return self.answer(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})
        if key_seen != "real":
            return self.answer(401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid API key"}})
        prompt = body["messages"][-1]["content"]
        text = f"echo: {prompt}"
        if not stream:
            return self.answer(200, message(text))
        events = [
            ("message_start", {"type": "message_start", "message": {**message(""), "content": [], "stop_reason": None}}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ]
        for word in text.split(" "):
            piece = word if not events[2:] else " " + word
            events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}))
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 4}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for name, data in events:
            chunk = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def answer(self, status, value):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = http.server.ThreadingHTTPServer((host, 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
