"""A real HTTP server for download tests: serves files with Range/If-Range, can cut transfers.

Test helper only; standard library. `RangeServer(folder)` serves `folder` on a free loopback
port in a thread. `drop_after[name] = [n, ...]`: the next transfers of `name` send n bytes of
the body (after announcing the full length) and close the connection, as a failing switch or a
rebooting file server does. Every request's Range header is recorded in `ranges`.
`sized=False` sends no Content-Length (the body ends when the connection closes), as some
servers and proxies do for generated or compressed content.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class RangeServer:
    def __init__(self, folder: Path, *, ranges: bool = True, sized: bool = True) -> None:
        self.folder = folder
        self.support_ranges = ranges
        self.sized = sized
        self.drop_after: dict[str, list[int]] = {}
        self.ranges: list[str | None] = []
        self.fail_status: list[int] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                server.ranges.append(self.headers.get("Range"))
                if server.fail_status:
                    self.send_error(server.fail_status.pop(0))
                    return
                name = self.path.lstrip("/")
                path = server.folder / name
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                etag = f'"{len(data)}-{int(path.stat().st_mtime_ns)}"'
                start = 0
                wanted = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if wanted and server.support_ranges and if_range in (None, etag):
                    start = int(wanted.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                if server.sized:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.close_connection = True
                self.send_header("ETag", etag)
                self.send_header("Accept-Ranges", "bytes" if server.support_ranges else "none")
                self.end_headers()
                cuts = server.drop_after.get(name)
                if cuts:
                    self.wfile.write(body[: cuts.pop(0)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self) -> RangeServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
