"""Bad input of every kind: malformed JSON, wrong content types, oversized bodies, unknown routes and
methods, raw protocol garbage. Bad input never yields a 5xx and never harms other requests."""
import socket

import pytest
import requests

from helpers import (alive, err, ok_json, raw_exchange, start_stream, status_of, uh, uniq)


# -- malformed JSON ------------------------------------------------------------------------------

MALFORMED = [b'{"email": ', b"{", b"{'email': 'a@b.c'}", b'{"email": "a@b.c",}', b"nul",
             b'{"email": "a@b.c"} trailing', b'{"email": "a@b.c"}{}', b"\xff\xfe{}",
             b'{"email": "a\xff@b.c"}', b'{"a":1,\n "b": }']


def user_json_paths(server, token):
    nid = uniq()
    start_stream(server, token, nid)
    return [
        ("POST", "/bots", uh(token)),
        ("PATCH", "/meetings/stream/%s" % nid, uh(token)),
        ("PUT", "/bots/stream/%s/config" % nid, uh(token)),
    ]


@pytest.mark.parametrize("body", MALFORMED)
def test_malformed_json_admin(server, body):
    r = server.admin("POST", "/admin/users", data=body,
                     headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    err(r, 400)
    u, _ = server.new_user()
    r = server.admin("PATCH", "/admin/users/%d" % u["id"], data=body,
                     headers={"Content-Type": "application/json"})
    err(r, 400)


def test_malformed_json_says_where(server):
    r = server.admin("POST", "/admin/users", data=b'{"email": "a@b.c",\n  "name": }',
                     headers={"Content-Type": "application/json"})
    d = err(r, 400, "line", "column")
    assert "2" in d, "error is on line 2: %r" % d


@pytest.mark.parametrize("body", MALFORMED[:6])
def test_malformed_json_user_routes(server, user, body):
    _, token = user
    for method, path, headers in user_json_paths(server, token):
        h = dict(headers)
        h["Content-Type"] = "application/json"
        err(server.request(method, path, data=body, headers=h), 400, "line", "column")


@pytest.mark.parametrize("body", [b"[]", b'"str"', b"5", b"null", b"true", b'[{"email":"a@b.c"}]'])
def test_json_not_object_is_422(server, user, body):
    _, token = user
    h = {"Content-Type": "application/json"}
    err(server.admin("POST", "/admin/users", data=body, headers=h), 422)
    for method, path, headers in user_json_paths(server, token):
        hh = dict(headers)
        hh.update(h)
        err(server.request(method, path, data=body, headers=hh), 422)


def test_empty_body_post_bots(server, user):
    _, token = user
    r = server.request("POST", "/bots", headers=uh(token))
    assert r.status_code in (400, 422), r.text
    err(r, r.status_code)


def test_deeply_nested_json(server):
    body = b'{"email":"a@b.c","data":' + b"[" * 100000 + b"]" * 100000 + b"}"
    r = server.admin("POST", "/admin/users", data=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.status_code
    assert alive(server)


def test_nul_in_strings_no_5xx(server, user):
    _, token = user
    r = server.admin("POST", "/admin/users", json={"email": "a\u0000b@example.com"})
    assert r.status_code in (201, 422), r.text
    r = server.admin("POST", "/admin/users", json={"email": uniq() + "@x.y", "name": "a\u0000b"})
    assert r.status_code in (201, 422), r.text
    nid = uniq()
    start_stream(server, token, nid)
    r = server.request("PATCH", "/meetings/stream/%s" % nid, headers=uh(token),
                       json={"data": {"name": "x\u0000y"}})
    assert r.status_code in (200, 422), r.text
    assert alive(server)


# -- content types ---------------------------------------------------------------------------------

@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x", "application/xml",
                                   "application/jsonx", "application/json; charset=utf-16",
                                   "application/json; charset=\"latin1\""])
def test_wrong_content_type_415(server, user, ctype):
    _, token = user
    body = b'{"email": "ct@example.com"}'
    err(server.admin("POST", "/admin/users", data=body, headers={"Content-Type": ctype}), 415)
    err(server.admin("GET", "/admin/users/email/ct@example.com"), 404)
    bots = b'{"platform": "stream", "native_meeting_id": "ct-1"}'
    err(server.request("POST", "/bots", data=bots,
                       headers={"Content-Type": ctype, "X-API-Key": token}), 415)
    nid = uniq()
    start_stream(server, token, nid)
    err(server.request("PATCH", "/meetings/stream/%s" % nid, data=b'{"data":{"name":"x"}}',
                       headers={"Content-Type": ctype, "X-API-Key": token}), 415)


def test_missing_content_type_with_body_415(server):
    # requests sends no Content-Type for raw bytes
    r = server.admin("POST", "/admin/users", data=b'{"email": "noct@example.com"}')
    assert "Content-Type" not in r.request.headers
    err(r, 415)


@pytest.mark.parametrize("ctype", ["application/json; charset=utf-8", "application/json;charset=UTF-8",
                                   "Application/JSON", "application/json; charset=\"utf-8\"",
                                   "application/json; charset=utf8"])
def test_json_content_type_variants_accepted(server, ctype):
    r = server.admin("POST", "/admin/users", data=('{"email": "%s@example.com"}' % uniq()).encode(),
                     headers={"Content-Type": ctype})
    ok_json(r, 201)


# -- body size caps --------------------------------------------------------------------------------

def big_user(n):
    """A valid POST /admin/users body of exactly n bytes (padding inside `data`)."""
    pad = n - len('{"email":"big@example.com","data":{"pad":""}}')
    return ('{"email":"big@example.com","data":{"pad":"%s"}}' % ("x" * pad)).encode()


def test_body_cap_flag(make_server):
    s = make_server(args=["--max-body-bytes", "1024"])
    r = s.admin("POST", "/admin/users", data=big_user(1000),
                headers={"Content-Type": "application/json"})
    ok_json(r, 201)
    r = s.admin("POST", "/admin/users", data=big_user(1025),
                headers={"Content-Type": "application/json"})
    err(r, 413)
    r = s.admin("POST", "/admin/users", data=big_user(200000),
                headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert alive(s)


def test_body_cap_env(make_server):
    s = make_server(env={"HARK_MAX_BODY_BYTES": "1024"})
    err(s.admin("POST", "/admin/users", data=big_user(4096),
                headers={"Content-Type": "application/json"}), 413)
    ok_json(s.admin("POST", "/admin/users", data=big_user(900),
                    headers={"Content-Type": "application/json"}), 201)


def test_body_cap_chunked(make_server):
    s = make_server(args=["--max-body-bytes", "1024"])

    def gen():
        yield b'{"email":"chunk@example.com","name":"'
        for _ in range(20):
            yield b"y" * 512
        yield b'"}'
    try:
        r = s.admin("POST", "/admin/users", data=gen(),
                    headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text
    except requests.exceptions.ConnectionError:
        pass  # the server may close the connection while the client is still sending
    err(s.admin("GET", "/admin/users/email/chunk@example.com"), 404)
    assert alive(s)


def test_chunked_body_under_cap_ok(server):
    def gen():
        yield b'{"email":"'
        yield uniq().encode()
        yield b'@example.com","name":"chunked"}'
    r = server.admin("POST", "/admin/users", data=gen(), headers={"Content-Type": "application/json"})
    assert ok_json(r, 201)["name"] == "chunked"


def test_default_body_cap_1mib(server):
    r = None
    try:
        r = server.admin("POST", "/admin/users", data=big_user(1024 * 1024 + 10),
                         headers={"Content-Type": "application/json"})
    except requests.exceptions.ConnectionError:
        pass
    if r is not None:
        err(r, 413)
    assert alive(server)


def test_413_without_reading_declared_body(server):
    # Content-Length above the cap is refused from the headers alone
    req = (b"POST /admin/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"X-Admin-API-Key: " + server.admin_token.encode() +
           b"\r\nContent-Length: 999999999999\r\n\r\n{")
    assert status_of(raw_exchange(server, req)) == 413
    assert alive(server)


# -- routes and methods ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/nope", "/admin", "/admin/nope", "/meetings/1/extra/more",
                                  "/bots/stream", "/bots/stream/x/y/z", "/%zz",
                                  "/healthz/x", "/" + "a" * 3000])
def test_unknown_route_404(server, path):
    r = server.admin("GET", path)
    assert r.status_code in (400, 404), (path, r.status_code)
    err(r, r.status_code)


def test_unknown_route_404_json(server):
    err(server.admin("GET", "/no/such/route"), 404)
    err(server.request("POST", "/no/such/route", json={}), 404)


@pytest.mark.parametrize("method,path,allowed", [
    ("POST", "/healthz", {"GET"}),
    ("DELETE", "/admin/users", {"GET", "POST"}),
    ("PUT", "/meetings", {"GET"}),
    ("GET", "/bots", {"POST"}),
    ("POST", "/meetings/1", {"GET"}),
    ("GET", "/admin/tokens/1", {"DELETE"}),
    ("PUT", "/admin/users/1", {"GET", "PATCH"}),
])
def test_wrong_method_405(server, user, method, path, allowed):
    _, token = user
    headers = dict(server.admin_headers())
    headers["X-API-Key"] = token
    r = server.request(method, path, headers=headers, json={} if method != "GET" else None)
    err(r, 405)
    allow = {m.strip() for m in r.headers.get("Allow", "").split(",") if m.strip()}
    assert allowed <= allow, "Allow %r lacks %r" % (r.headers.get("Allow"), allowed)
    assert method not in allow


# -- raw protocol garbage --------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    b"POST /bots HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding : chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"POST /bots HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\nContent-Type: application/json\r\n"
    b"Content-Length : 2\r\n\r\n{}",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX Foo: a\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX(Foo): a\r\n\r\n",
])
def test_separator_in_header_name_is_400(server, user, data):
    """Whitespace or another separator in a header name (RFC 9112 5.1): a proxy in front may read
    "Transfer-Encoding : chunked" as some other header and frame the body differently."""
    _, token = user
    raw = raw_exchange(server, data.replace(b"%s", token.encode()))
    assert status_of(raw) == 400, raw[:300]


@pytest.mark.parametrize("data", [
    b"\x00\x01\x02garbage\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
    b"POST /admin/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # TLS ClientHello
])
def test_garbage_gets_400_and_server_keeps_serving(server, user, data):
    _, token = user
    # an open, healthy keep-alive client before and after
    with requests.Session() as s:
        assert s.get(server.url + "/healthz", timeout=5).status_code == 200
        raw = raw_exchange(server, data)
        st = status_of(raw)
        assert st is not None and 400 <= st < 500, raw[:200]
        if data.startswith(b"\x00") or data.startswith(b"GARBAGE"):
            assert st == 400, raw[:200]
        assert s.get(server.url + "/healthz", timeout=5).status_code == 200
    ok_json(server.request("GET", "/meetings", headers=uh(token)))


def test_garbage_after_valid_request_on_same_connection(server):
    req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    s = socket.create_connection((server.host, server.port), timeout=5)
    try:
        s.sendall(req + b"\x00\xffjunk junk\r\n\r\n")
        data = b""
        while True:
            try:
                c = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not c:
                break
            data += c
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert b"HTTP/1.1 400" in data, data[:400]
    assert alive(server)


def test_half_sent_request_then_close(server):
    for chunk in (b"GET /heal", b"POST /admin/users HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"e"):
        s = socket.create_connection((server.host, server.port), timeout=5)
        s.sendall(chunk)
        s.close()
    assert alive(server)


def test_huge_headers_rejected(server):
    req = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (200 * 1024) + b"\r\n\r\n")
    try:
        raw = raw_exchange(server, req)
        st = status_of(raw)
        # the server may reset the connection before the client reads the response
        assert st in (400, 431) or raw == b"", raw[:200]
    except (ConnectionResetError, BrokenPipeError):
        pass
    assert alive(server)


def test_pipelined_requests_answered_in_order(server, user):
    _, token = user
    req = (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /meetings/999999 HTTP/1.1\r\nHost: x\r\nX-API-Key: " + token.encode() + b"\r\n\r\n"
           b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    s = socket.create_connection((server.host, server.port), timeout=5)
    data = b""
    try:
        s.sendall(req)
        while True:
            try:
                c = s.recv(65536)
            except socket.timeout:
                break
            if not c:
                break
            data += c
    finally:
        s.close()
    import re
    codes = [int(c) for c in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
    assert codes == [200, 404, 404], data[:600]


@pytest.mark.parametrize("body", [
    {"platform": "stream", "native_meeting_id": "x", "language": None},
    {"platform": "stream", "native_meeting_id": "x", "extra": {"deep": [1, 2, {"x": None}]}},
    {"platform": {"$ne": 1}, "native_meeting_id": {"$gt": ""}},
    {"platform": "stream", "native_meeting_id": "x' OR '1'='1"},
    {"platform": "stream", "native_meeting_id": "x\"; DROP TABLE meetings; --"},
    {"platform": "stream" * 10000, "native_meeting_id": "x"},
])
def test_odd_bots_bodies_never_5xx(server, user, body):
    _, token = user
    r = server.request("POST", "/bots", headers=uh(token), json=body)
    assert r.status_code < 500, r.text
    assert r.status_code in (201, 422), r.text
    assert alive(server)
    ok_json(server.request("GET", "/meetings", headers=uh(token)))


def test_sql_like_path_params(server, user):
    _, token = user
    start_stream(server, token)
    for path in ["/meetings/1%20OR%201=1", "/meetings/1;DROP", "/bots/stream/x'%20OR%20'1'='1",
                 "/admin/users/email/x'%20OR%20'1'='1"]:
        headers = dict(uh(token))
        headers.update(server.admin_headers())
        method = "DELETE" if path.startswith("/bots") else "GET"
        r = server.request(method, path, headers=headers)
        assert r.status_code in (400, 404), (path, r.status_code, r.text)
    assert len(ok_json(server.request("GET", "/meetings", headers=uh(token)))["meetings"]) == 1


@pytest.mark.parametrize("pad", [500, 503, 504, 505, 510])
def test_control_chars_in_long_path_logged_safely(server, pad):
    # Regression: a tab near the end of a long request path overflowed the access-log quoting
    # buffer by one byte (caught by AddressSanitizer). The server must answer and keep serving.
    reply = raw_exchange(server, b"GET /" + b"a" * pad + b"\tb HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 "), reply[:80]
    assert alive(server)
