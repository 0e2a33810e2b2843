"""Fixtures that start the real `hark serve` on an ephemeral port with a temporary data directory.

Every server started here is stopped with SIGTERM at the end of its test, and the test fails if the
process did not exit 0 or printed a sanitizer report (so `make sanitize` checks every API test).
"""
import os
import re
import signal
import subprocess
import threading
import time
import uuid

import pytest
import requests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HARK_BIN = os.environ.get("HARK_BIN", os.path.join(REPO, "hark"))
ADMIN_TOKEN = "test-admin-" + uuid.uuid4().hex
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


class Server:
    """One running `hark serve` process."""

    def __init__(self, data_dir, args=(), env=None, admin_token=ADMIN_TOKEN):
        self.data_dir = str(data_dir)
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.admin_token = admin_token
        self.proc = None
        self.port = None
        self.log_lines = []
        self._ready = threading.Event()

    # -- process control -------------------------------------------------------------------
    def start(self, timeout=20):
        cmd = [HARK_BIN, "serve", "--port", "0", "--data-dir", self.data_dir] + self.args
        if self.admin_token is not None:
            cmd += ["--admin-token", self.admin_token]
        env = dict(os.environ)
        # Loading the recogniser costs ~0.5 s and ~90 MB per decoder: only tests that need it
        # ask for it (env={"HARK_ASR": "pocketsphinx"}).
        env.setdefault("HARK_ASR", "none")
        env.update(self.extra_env)
        self.log_lines = []
        self._ready.clear()
        self.port = None
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env, text=True, errors="replace")
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(timeout):
            self.proc.kill()
            raise RuntimeError("hark did not become ready:\n" + self.log())
        return self

    def _pump(self):
        for line in self.proc.stdout:
            self.log_lines.append(line)
            if self.port is None and "msg=ready" in line:
                m = re.search(r"\bport=(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    self._ready.set()

    def log(self):
        return "".join(self.log_lines)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Stops the server; returns its exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("hark did not exit within %ss of signal %s" % (timeout, sig))

    def kill(self):
        """kill -9: no chance to clean up."""
        self.proc.kill()
        self.proc.wait()

    def restart(self):
        self.stop()
        return self.start()

    def check_clean_exit(self):
        rc = self.stop()
        text = self.log()
        for marker in SANITIZER_MARKERS:
            assert marker not in text, "sanitizer report in server log:\n" + text[-8000:]
        assert rc == 0, "hark exited with %r; log tail:\n%s" % (rc, text[-4000:])

    # -- HTTP helpers ----------------------------------------------------------------------
    @property
    def host(self):
        return "127.0.0.1"

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def admin_headers(self):
        return {"X-Admin-API-Key": self.admin_token}

    def request(self, method, path, **kw):
        return requests.request(method, self.url + path, timeout=10, **kw)

    def admin(self, method, path, **kw):
        headers = dict(kw.pop("headers", {}))
        headers.update(self.admin_headers())
        return self.request(method, path, headers=headers, **kw)

    def new_user(self, email=None, **fields):
        """Creates a user and a token; returns (user_json, token)."""
        email = email or ("u-%s@example.com" % uuid.uuid4().hex[:10])
        body = {"email": email}
        body.update(fields)
        r = self.admin("POST", "/admin/users", json=body)
        assert r.status_code in (200, 201), r.text
        user = r.json()
        r = self.admin("POST", "/admin/users/%d/tokens" % user["id"])
        assert r.status_code == 201, r.text
        return user, r.json()["token"]


@pytest.fixture
def make_server(tmp_path):
    """Factory: make_server(args=[...], env={...}) → started Server; all stopped at teardown."""
    servers = []

    def factory(args=(), env=None, data_dir=None, admin_token=ADMIN_TOKEN, start=True):
        d = data_dir or (tmp_path / ("data%d" % len(servers)))
        s = Server(d, args=args, env=env, admin_token=admin_token)
        servers.append(s)
        return s.start() if start else s

    yield factory
    for s in servers:
        if s.proc is not None and s.proc.poll() is None:
            s.check_clean_exit()


@pytest.fixture
def server(make_server):
    """A started server with a fresh data directory."""
    return make_server()


@pytest.fixture
def user(server):
    """(user_json, token) for a fresh user on `server`."""
    return server.new_user()


def user_headers(token):
    return {"X-API-Key": token}
