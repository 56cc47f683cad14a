"""A release repository for the lab tests: an HTTP server on 127.0.0.1 (a free port) that
serves $HITLESS_RELEASES as an artifact repository would, to a client with its token only.

``/repo/NAME`` and ``/redirect/NAME`` want ``Authorization: Bearer TOKEN``; ``/redirect/NAME``
answers with a 302 to ``/storage/NAME?signature=...`` (presigned storage, which must NOT get
the token). Every request is recorded. ``serving(root)`` runs one for a ``with`` block.
"""
import contextlib
import http.server
import os
import secrets
import threading
import urllib.parse


class RepositoryHandler(http.server.BaseHTTPRequestHandler):
    """GET /repo/NAME and /redirect/NAME with the token, /storage/NAME without it."""

    server_version = "hitless-test-repository"

    def do_GET(self):  # pylint: disable=invalid-name
        repo = self.server
        path = urllib.parse.urlsplit(self.path).path
        area, _sep, name = path.lstrip("/").partition("/")
        sent = self.headers.get("Authorization")
        auth = None if sent is None else "token" if sent == "Bearer " + repo.token else "wrong"
        if area in ("repo", "redirect") and auth != "token":
            status = 401
        elif area == "redirect":
            status = 302
        elif area in ("repo", "storage") and os.path.isfile(repo.file(name)):
            status = 200
        else:
            status = 404
        repo.record(path, status, auth)
        if status == 302:
            self.send_response(302)
            self.send_header("Location", "/storage/%s?signature=%s" % (name, secrets.token_hex(8)))
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif status == 200:
            with open(repo.file(name), "rb") as handle:
                body = handle.read()
            self.send_response(200)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="releases"')
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


class Repository(http.server.ThreadingHTTPServer):
    """The repository on 127.0.0.1 (a free port); ``requests`` lists ``(path, status, auth)``,
    auth being ``token``, ``wrong`` or None (no Authorization header)."""

    daemon_threads = True

    def __init__(self, root, token=None):
        super().__init__(("127.0.0.1", 0), RepositoryHandler)
        self.root = root
        self.token = token or secrets.token_hex(16)
        self.requests = []
        self._lock = threading.Lock()

    def file(self, name):
        return os.path.join(self.root, os.path.basename(name))

    def record(self, path, status, auth):
        with self._lock:
            self.requests.append((path, status, auth))

    def since(self, count):
        with self._lock:
            return list(self.requests[count:])

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.server_address[1], path)


@contextlib.contextmanager
def serving(root, token=None):
    """A :class:`Repository` of ``root`` serving in a thread; shut down on leaving."""
    repo = Repository(root, token)
    thread = threading.Thread(target=repo.serve_forever, daemon=True)
    thread.start()
    try:
        yield repo
    finally:
        repo.shutdown()
        repo.server_close()
        thread.join(10)
