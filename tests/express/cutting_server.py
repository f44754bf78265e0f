#!/usr/bin/env python3
"""A web server on loopback that serves ranges and cuts transfers in the middle.

Usage: cutting_server.py DIR CONTROL_FILE

Serves the files of DIR on 127.0.0.1 (a free port, printed on the first line of
standard output), answering `Range: bytes=A-B` and `bytes=-N` with one range (206),
as nginx does. While CONTROL_FILE exists and holds a number N > 0, each response
to a `bytes=A-B` range longer than 4096 bytes is cut after half of it (the headers promise
the whole range, then the connection closes), and N is decremented. Every request
is appended to DIR/../cutting-server.log as "RANGE STATUS BYTES-SENT".

Stops by itself after 10 minutes, or when its standard input closes.
"""

import http.server
import os
import re
import sys
import threading

ROOT, CONTROL = sys.argv[1], sys.argv[2]
LOG = os.path.join(os.path.dirname(os.path.abspath(ROOT)), "cutting-server.log")
LOCK = threading.Lock()


def take_cut():
    """Whether to cut this response (and use one of the cuts left)."""
    with LOCK:
        try:
            with open(CONTROL) as f:
                left = int(f.read().strip() or "0")
        except (FileNotFoundError, ValueError):
            return False
        if left <= 0:
            return False
        with open(CONTROL, "w") as f:
            f.write(str(left - 1))
        return True


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = os.path.join(ROOT, self.path.lstrip("/"))
        if not os.path.isfile(path):
            self.send_error(404)
            return
        size = os.path.getsize(path)
        start, end, status = 0, size, 200
        wanted = self.headers.get("Range")
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", wanted or "")
        if match:
            first, last = match.groups()
            if first == "":
                start, end = max(0, size - int(last)), size
            else:
                start, end = int(first), min(size, int(last) + 1 if last else size)
            status = 206
            if start >= end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        self.send_header("ETag", f'"{int(os.path.getmtime(path))}-{size}"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        # The end of the file (a suffix range) is never cut: the cuts fall in the payload.
        cut = status == 206 and not wanted.startswith("bytes=-") and end - start > 4096 and take_cut()
        sent_end = start + (end - start) // 2 if cut else end
        with open(path, "rb") as f:
            f.seek(start)
            left = sent_end - start
            while left > 0:
                chunk = f.read(min(left, 65536))
                self.wfile.write(chunk)
                left -= len(chunk)
        self.wfile.flush()
        with LOCK, open(LOG, "a") as log:
            log.write(f"{wanted or '-'} {status} {sent_end - start}{' CUT' if cut else ''}\n")
        if cut:
            self.close_connection = True
            self.connection.shutdown(2)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
threading.Thread(target=lambda: (sys.stdin.read(), server.shutdown()), daemon=True).start()
threading.Timer(600, server.shutdown).start()
server.serve_forever()
os._exit(0)
