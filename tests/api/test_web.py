"""The dashboard's static files: /, /assets/…, /favicon.ico (types, caching, ETags)."""
import re

import requests


def get(server, path, **headers):
    return requests.get(server.url + path, headers=headers, timeout=10)


def test_index_links_versioned_assets_served_immutable(server):
    r = get(server, "/")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-cache"
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    refs = re.findall(r'"/assets/([0-9a-f]{16})/([A-Za-z0-9._-]+)"', r.text)
    names = {n for _, n in refs}
    assert {"app.js", "app.css", "favicon.svg"} <= names, refs
    assert len({v for v, _ in refs}) == 1, "one build version for every asset"
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
             ".svg": "image/svg+xml"}
    for version, name in refs:
        a = get(server, "/assets/%s/%s" % (version, name))
        assert a.status_code == 200, name
        assert a.headers["Content-Type"] == types[name[name.rindex("."):]]
        assert a.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert a.headers["X-Content-Type-Options"] == "nosniff"
        plain = get(server, "/assets/" + name)
        assert plain.content == a.content and plain.headers["Cache-Control"] == "no-cache"
    # Another version's URL still answers, but is not cached as immutable.
    old = get(server, "/assets/0000000000000000/app.js")
    assert old.status_code == 200 and old.headers["Cache-Control"] == "no-cache"


def test_etag_revalidation(server):
    for path in ("/", "/assets/app.js", "/favicon.ico"):
        r = get(server, path)
        etag = r.headers["ETag"]
        assert re.fullmatch(r'"[0-9a-f]{20}"', etag)
        r2 = get(server, path, **{"If-None-Match": etag})
        assert r2.status_code == 304 and r2.content == b""
        assert r2.headers["ETag"] == etag
        r3 = get(server, path, **{"If-None-Match": 'W/"0123", ' + etag})
        assert r3.status_code == 304
        assert get(server, path, **{"If-None-Match": '"nope"'}).status_code == 200


def test_favicon_head_and_unknown_assets(server):
    r = get(server, "/favicon.ico")
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/svg+xml"
    assert r.content.startswith(b"<svg")
    h = requests.head(server.url + "/assets/app.css", timeout=10)
    assert h.status_code == 200 and h.content == b""
    for path in ("/assets/nope.js", "/assets/index.html", "/assets/x/index.html",
                 "/assets/..%2fMakefile", "/assets/", "/index.html"):
        r = get(server, path)
        assert r.status_code == 404, path
        assert r.headers["Content-Type"].startswith("application/json")
    assert requests.post(server.url + "/", timeout=10).status_code == 405
