"""A loopback HTTP mirror for tests: serves given files on 127.0.0.1, counts requests, and
misbehaves on demand. Nothing here touches any other address."""

import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("corrupt", "truncate", "reset", "pause")


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A client giving up mid-body is what the faults provoke: no traceback on stderr."""


class LoopbackMirror:
    """``with LoopbackMirror({name: bytes}, fault) as mirror:`` serves ``mirror.url + name``.

    A name not in the dict gets a 404. ``fault``:
      None        serve the files as given
      "corrupt"   the right length, first byte flipped (a checksum mismatch)
      "truncate"  announce the full Content-Length, send half the body, close the connection
      "reset"     send half the body, then reset the connection (TCP RST)
      "pause"     send half the body, wait ``pause`` seconds, send the rest
    ``requests`` lists the paths asked for, in order: a test counts network use with it.
    """

    def __init__(self, files, fault=None, pause=0.0):
        if fault not in (None, *FAULTS):
            raise ValueError(f"fault must be None or one of {FAULTS}, got {fault!r}")
        self.files = dict(files)
        self.fault = fault
        self.pause = pause
        self.requests = []
        self.server = QuietServer(("127.0.0.1", 0), self._handler_class())

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_port}/mnist/"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()

    def _handler_class(self):
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                mirror.requests.append(self.path)
                body = mirror.files.get(self.path.removeprefix("/mnist/"))
                if body is None:
                    self.send_error(404)
                    return
                if mirror.fault == "corrupt":
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mirror.fault == "pause":
                    self.wfile.write(body[: len(body) // 2])
                    time.sleep(mirror.pause)
                    self.wfile.write(body[len(body) // 2 :])
                    return
                if mirror.fault in ("truncate", "reset"):
                    self.wfile.write(body[: len(body) // 2])
                    if mirror.fault == "reset":
                        # Linger 0 makes close() send RST instead of FIN.
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    return
                self.wfile.write(body)

            def log_message(self, format, *args):
                pass

        return Handler


class SilentServer:
    """``with SilentServer(accept) as server:`` a port on 127.0.0.1 that takes connections and never
    answers, as a firewall or captive portal swallowing traffic does. ``accept=False``: it only
    listens (the kernel completes the handshake, nobody reads); ``True``: each connection is
    accepted and held open, never written to. ``connections`` counts the accepted ones."""

    def __init__(self, accept=False):
        self.accept = accept
        self.held = []
        self.stopped = threading.Event()
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.socket.settimeout(0.01)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/mnist/"

    @property
    def connections(self):
        return len(self.held)

    def __enter__(self):
        if self.accept:
            threading.Thread(target=self._hold, daemon=True).start()
        return self

    def _hold(self):
        while not self.stopped.is_set():
            try:
                self.held.append(self.socket.accept()[0])
            except TimeoutError:
                continue
            except OSError:  # closed by __exit__
                return

    def __exit__(self, *exc_info):
        self.stopped.set()
        for connection in self.held:
            connection.close()
        self.socket.close()
