"""Helpers shared by the API tests (assertions on hark's JSON/error conventions, stream meetings,
JWT decoding, raw sockets). Fixtures live in conftest.py."""
import base64
import json
import os
import re
import socket
import time
import uuid

import requests

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
MEETING_KEYS = {"id", "user_id", "platform", "native_meeting_id", "constructed_meeting_url",
                "status", "start_time", "end_time", "data", "created_at", "updated_at"}
MEETING_DATA_KEYS = {"name", "participants", "languages", "notes", "completion_reason",
                     "failure_stage", "status_transition"}
USER_KEYS = {"id", "email", "name", "max_concurrent_bots", "data", "created_at"}
TERMINAL = ("completed", "failed")


def uniq(prefix="m"):
    """A fresh native meeting id / name that only uses [A-Za-z0-9._:@-]."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


def is_iso(value):
    return isinstance(value, str) and ISO_MS.match(value) is not None


def ok_json(r, status=200):
    """Asserts status and a JSON success response (application/json; charset=utf-8); returns it."""
    assert r.status_code == status, "expected %d, got %d: %s" % (status, r.status_code, r.text)
    ctype = r.headers.get("Content-Type", "")
    assert ctype.replace(" ", "").lower() == "application/json;charset=utf-8", ctype
    return r.json()


def err(r, status, *words):
    """Asserts an error response: status, JSON content type, {"detail": str} naming every word
    (case-insensitive). Returns the detail."""
    assert r.status_code == status, "expected %d, got %d: %s" % (status, r.status_code, r.text)
    ctype = r.headers.get("Content-Type", "")
    assert ctype.lower().startswith("application/json"), "error content type %r" % ctype
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("detail"), str), body
    assert body["detail"], "empty detail"
    for w in words:
        assert w.lower() in body["detail"].lower(), "detail %r does not mention %r" % (
            body["detail"], w)
    return body["detail"]


def uh(token):
    return {"X-API-Key": token}


def start_stream(server, token, native_id=None, expect=201, **fields):
    """POST /bots for a stream meeting; returns the response JSON (asserting `expect`)."""
    body = {"platform": "stream", "native_meeting_id": native_id or uniq()}
    body.update(fields)
    r = server.request("POST", "/bots", headers=uh(token), json=body)
    assert r.status_code == expect, "POST /bots %s → %d %s" % (body, r.status_code, r.text)
    return r.json()


def stop_stream(server, token, native_id, expect=202):
    r = server.request("DELETE", "/bots/stream/%s" % native_id, headers=uh(token))
    assert r.status_code == expect, "DELETE /bots/stream/%s → %d %s" % (
        native_id, r.status_code, r.text)
    return r.json()


def get_meeting(server, token, meeting_id):
    return ok_json(server.request("GET", "/meetings/%d" % meeting_id, headers=uh(token)))


def b64url_decode(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def jwt_parts(token):
    """(header, payload) of a JWT, decoded without verifying the signature."""
    parts = token.split(".")
    assert len(parts) == 3 and all(parts), "not a JWT: %r" % token
    for p in parts:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", p), "not base64url: %r" % p
    return json.loads(b64url_decode(parts[0])), json.loads(b64url_decode(parts[1]))


def poll(fn, timeout=5.0, interval=0.1):
    """Calls fn() until it returns a truthy value or timeout passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def wait_for(pred, timeout=20, what="condition", interval=0.05):
    """Calls pred() until it returns a truthy value, which it returns; fails the test after
    timeout seconds, naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("timed out waiting for " + what)


def pid_alive(pid):
    """True while the process exists and is not a zombie (a zombie is gone for our purposes)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def raw_exchange(server, data, timeout=5.0, shut=False):
    """Sends raw bytes on a fresh TCP connection and returns everything read until the server
    closes it or `timeout` passes without data."""
    s = socket.create_connection((server.host, server.port), timeout=timeout)
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                c = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not c:
                break
            chunks.append(c)
            # One full response is enough when the server keeps the connection open.
            blob = b"".join(chunks)
            if b"\r\n\r\n" in blob:
                head, _, rest = blob.partition(b"\r\n\r\n")
                m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                if m and len(rest) >= int(m.group(1)):
                    break
        return b"".join(chunks)
    finally:
        s.close()


def status_of(raw):
    """Status code of the first response in raw bytes, or None."""
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", raw)
    return int(m.group(1)) if m else None


def alive(server):
    r = requests.get(server.url + "/healthz", timeout=5)
    return r.status_code == 200


def metric_value(text, name, **labels):
    """Sum of the values of metric `name` whose labels include all of `labels`."""
    total = 0.0
    found = False
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(4))
            found = True
    return total if found else None
