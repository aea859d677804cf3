"""Fetching files from HTTP(S) and file:// mirrors: retries, backoff, timeouts, dead mirrors.

Transient failures (connection reset, timeout while reading, no response, truncated body, HTTP
5xx) are retried with exponential backoff; a 4xx or a wrong checksum moves on to the next mirror;
a mirror that cannot be reached (no DNS, refused, connect timeout) or still gives no response
after the retries is not asked again for the other files.
"""

import hashlib
import http.client
import logging
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from errno import EHOSTUNREACH, ENETUNREACH
from pathlib import Path

from tqdm import tqdm

from pipeline.config import ConfigError
from pipeline.files import atomic_write

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 16
TRANSIENT_HTTP_CODES = {408, 429, 500, 502, 503, 504}


class DownloadError(RuntimeError):
    """Every mirror failed for one file; the message lists each URL tried and why it failed."""

    def __init__(self, name, attempts):
        self.attempts = attempts
        if not attempts:
            super().__init__(f"could not download {name}: no mirror is configured (data.mirrors is empty)")
            return
        lines = [f"{attempt['url']}: {attempt['error']}" for attempt in attempts]
        super().__init__(f"could not download {name}: every mirror failed\n  " + "\n  ".join(lines))


class AttemptFailed(Exception):
    """One attempt at one URL failed, for ``reason``.

    ``transient``: worth another attempt at the same URL. ``unreachable``: the mirror itself
    cannot be reached, so it is skipped for the remaining files.
    """

    def __init__(self, reason, transient=False, unreachable=False):
        super().__init__(reason)
        self.reason, self.transient, self.unreachable = reason, transient, unreachable


class Downloader:
    """Fetches files from an ordered list of mirrors, with retries, remembering dead mirrors."""

    def __init__(self, data, mirrors):
        self.mirrors = mirrors
        self.connect_timeout = data.connect_timeout
        self.retries = data.retries
        self.backoff = data.backoff
        self.read_timeout = data.read_timeout
        self.opener = urllib.request.build_opener(*split_timeout_handlers(data.read_timeout))
        self.unreachable = {}  # mirror -> why it could not be reached

    def fetch(self, name, spec, destination):
        """Download ``name`` to ``destination`` from the first mirror that serves it intact.

        Returns (the URL it came from, the failed attempts before it). Raises DownloadError
        listing every attempt when all mirrors fail; ``destination`` is then untouched.
        """
        attempts = []
        for mirror in self.mirrors:
            url = mirror + name
            if mirror in self.unreachable:
                attempts.append({"url": url, "error": f"not tried: mirror unreachable ({self.unreachable[mirror]})"})
                continue
            for attempt in range(1 + self.retries):
                if attempt:
                    time.sleep(self.backoff * 2 ** (attempt - 1))
                try:
                    self.download(url, spec, destination)
                    log.info("%s: downloaded from %s, %s bytes, SHA-256 verified", name, url, f"{spec.size:,}")
                    return url, attempts
                except AttemptFailed as failure:
                    attempts.append({"url": url, "error": failure.reason})
                    log.info("%s: %s", url, failure.reason)
                    last = failure
                    if not failure.transient:
                        break
            if last.unreachable:  # to the last attempt: the mirror is out of reach
                self.unreachable[mirror] = last.reason
        raise DownloadError(name, attempts)

    def download(self, url, spec, destination):
        """One attempt: stream ``url`` into ``destination``, which changes only if it verifies."""
        try:
            response = self.opener.open(url, timeout=self.connect_timeout)
        except urllib.error.HTTPError as error:
            raise AttemptFailed(f"HTTP {error.code} {error.reason}", transient=error.code in TRANSIENT_HTTP_CODES) from None
        except urllib.error.URLError as error:
            reason = error.reason
            dropped = isinstance(reason, ConnectionResetError)
            raise AttemptFailed(describe(reason), transient=dropped, unreachable=is_unreachable(reason)) from None
        except TimeoutError:
            # Connected, request sent, no answer (urllib lets this one through unwrapped): a
            # firewall or captive portal swallowing traffic looks like this, so after the retries
            # the mirror is skipped for the other files.
            raise AttemptFailed(f"no response within {self.read_timeout:g} s (data.read_timeout)", transient=True,
                                unreachable=True) from None
        except (OSError, http.client.HTTPException) as error:  # closed or garbled before a status line
            raise AttemptFailed(f"no valid response: {describe(error)}", transient=True) from None
        with response:
            announced = response.headers.get("Content-Length")
            if announced is not None and int(announced) != spec.size:
                raise AttemptFailed(f"wrong size: the server announces {int(announced):,} bytes, expected {spec.size:,}")
            digest = hashlib.sha256()
            received = 0
            progress = tqdm(total=spec.size, desc=url.rsplit("/", 1)[-1], unit="B", unit_scale=True,
                            unit_divisor=1024, leave=False, disable=None)
            with progress, atomic_write(destination) as out:
                while chunk := read_body(response):
                    received += len(chunk)
                    if received > spec.size:
                        raise AttemptFailed(f"wrong size: more than the expected {spec.size:,} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                    progress.update(len(chunk))
                if received < spec.size:
                    raise AttemptFailed(f"truncated: received {received:,} of {spec.size:,} bytes", transient=True)
                if digest.hexdigest() != spec.sha256:
                    raise AttemptFailed(f"checksum mismatch: SHA-256 {digest.hexdigest()}, expected {spec.sha256}")


def read_body(response):
    """The next chunk of the response body (b"" at its end); a failure to read is transient."""
    try:
        return response.read(CHUNK_BYTES)
    except (OSError, http.client.HTTPException) as error:
        raise AttemptFailed(describe(error), transient=True) from None


def split_timeout_handlers(read_timeout):
    """urllib handlers whose connections use the opener's timeout to connect, then ``read_timeout``.

    urllib has a single timeout for both; a short connect timeout is what makes an offline run
    fail fast, while a slow mirror deserves longer between bytes.
    """

    class ReadTimeout:
        def do_open(self, http_class, request, **connection_args):
            class Connection(http_class):
                def connect(self):
                    super().connect()
                    self.sock.settimeout(read_timeout)

            return super().do_open(Connection, request, **connection_args)

    class HTTPHandler(ReadTimeout, urllib.request.HTTPHandler):
        pass

    class HTTPSHandler(ReadTimeout, urllib.request.HTTPSHandler):
        pass

    return HTTPHandler, HTTPSHandler


def is_unreachable(reason):
    """Whether a connection failure means the mirror as a whole is out of reach."""
    return isinstance(reason, (socket.gaierror, ConnectionRefusedError, TimeoutError, ssl.SSLError)) or (
        getattr(reason, "errno", None) in (ENETUNREACH, EHOSTUNREACH)
    )


def describe(error):
    return str(error) or type(error).__name__


def mirror_url(mirror):
    """A mirror as a URL ending in "/": http(s):// and file:// as given, a local folder as file://."""
    if "://" not in mirror:
        return Path(mirror).expanduser().resolve().as_uri().rstrip("/") + "/"
    if urllib.parse.urlsplit(mirror).scheme not in ("http", "https", "file"):
        raise ConfigError(f"data.mirrors: {mirror!r} must be an http://, https:// or file:// URL, or a local folder")
    return mirror.rstrip("/") + "/"
