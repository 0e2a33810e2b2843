"""Operations: /healthz, /readyz, /metrics, the CLI (--version, --help, config, bad flags), the
generated admin token, signals."""
import os
import re
import signal
import stat
import subprocess
import uuid

import pytest
import requests

from conftest import HARK_BIN, REPO
from helpers import err, metric_value, ok_json, uh

VERSION = open(os.path.join(REPO, "VERSION")).read().strip()


def run_cli(args, env=None, timeout=15):
    e = dict(os.environ)
    for k in list(e):
        if k.startswith("HARK_") and k != "HARK_BIN":
            del e[k]
    e.update(env or {})
    return subprocess.run([HARK_BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, errors="replace", timeout=timeout, env=e)


# -- health ----------------------------------------------------------------------------------------

def test_healthz(server):
    r = requests.get(server.url + "/healthz", timeout=5)
    assert ok_json(r) == {"status": "ok"}


def test_readyz(server):
    body = ok_json(requests.get(server.url + "/readyz", timeout=5))
    assert body["status"] == "ready"


def test_ops_routes_ignore_bad_keys(server):
    h = {"X-API-Key": "bogus", "X-Admin-API-Key": "bogus"}
    assert requests.get(server.url + "/healthz", headers=h, timeout=5).status_code == 200
    assert requests.get(server.url + "/readyz", headers=h, timeout=5).status_code == 200
    assert requests.get(server.url + "/metrics", headers=h, timeout=5).status_code == 200


def test_request_id_echoed(server):
    r = requests.get(server.url + "/healthz", headers={"X-Request-Id": "abc-123"}, timeout=5)
    assert r.headers.get("X-Request-Id") == "abc-123"
    r = requests.get(server.url + "/healthz", timeout=5)
    assert r.headers.get("X-Request-Id")


# -- metrics ---------------------------------------------------------------------------------------

def metrics(server):
    r = requests.get(server.url + "/metrics", timeout=5)
    assert r.status_code == 200
    ctype = r.headers.get("Content-Type", "")
    assert ctype.startswith("text/plain"), ctype
    return r.text


def test_metrics_format(server):
    requests.get(server.url + "/healthz", timeout=5)
    text = metrics(server)
    for name in ("hark_http_requests_total", "hark_http_request_duration_seconds",
                 "hark_http_open_connections", "hark_build_info"):
        assert re.search(r"^# TYPE %s " % name, text, re.M), "no TYPE line for " + name
    assert re.search(r"^# TYPE hark_http_requests_total counter$", text, re.M)
    assert re.search(r"^# TYPE hark_http_request_duration_seconds histogram$", text, re.M)
    assert re.search(r"^# TYPE hark_http_open_connections gauge$", text, re.M)
    for suffix in ("_bucket", "_sum", "_count"):
        assert re.search(r"^hark_http_request_duration_seconds%s[{ ]" % suffix, text, re.M), suffix
    assert re.search(r'^hark_http_request_duration_seconds_bucket\{[^}]*le="\+Inf"[^}]*\} \d', text,
                     re.M)
    assert metric_value(text, "hark_build_info", version=VERSION) == 1
    assert metric_value(text, "hark_http_open_connections") >= 1  # this request
    # every sample line parses
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        assert re.match(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eEInfNa]+( \d+)?$', line), line


def test_metrics_counters_increase(server, user):
    _, token = user
    before = metric_value(metrics(server), "hark_http_requests_total", route="/healthz",
                          status="200") or 0
    for _ in range(3):
        requests.get(server.url + "/healthz", timeout=5)
    text = metrics(server)
    after = metric_value(text, "hark_http_requests_total", route="/healthz", status="200")
    assert after is not None and after >= before + 3, (before, after)
    # histogram count grows with the requests too
    assert healthz_buckets(text)[0][-1][1] >= 3
    # a 404 on a parametrised route is counted under its pattern, not under the raw path
    server.request("GET", "/meetings/987654321", headers=uh(token))
    text = metrics(server)
    assert "987654321" not in text
    assert metric_value(text, "hark_http_requests_total", status="404") >= 1


def test_metrics_unknown_paths_do_not_create_series(server):
    tag = uuid.uuid4().hex
    for i in range(5):
        requests.get(server.url + "/junk-%s-%d" % (tag, i), timeout=5)
    assert tag not in metrics(server)


def healthz_buckets(text):
    """(le, count) pairs of the duration histogram for /healthz, or of the unlabelled histogram
    when the server does not label it by route."""
    by_route, plain = [], []
    for line in text.splitlines():
        m = re.match(r'^hark_http_request_duration_seconds_bucket\{(.*)\} (\S+)$', line)
        if not m:
            continue
        labels = dict(re.findall(r'([a-zA-Z_]+)="([^"]*)"', m.group(1)))
        le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
        if labels.get("route") == "/healthz" and set(labels) <= {"le", "route", "method"}:
            by_route.append((le, float(m.group(2))))
        elif set(labels) == {"le"}:
            plain.append((le, float(m.group(2))))
    return sorted(by_route or plain), bool(by_route)


def test_metrics_buckets_cumulative(server):
    for _ in range(5):
        requests.get(server.url + "/healthz", timeout=5)
    text = metrics(server)
    buckets, labelled = healthz_buckets(text)
    assert buckets, "no histogram buckets for /healthz"
    counts = [c for _, c in buckets]
    assert counts == sorted(counts), "buckets not cumulative: %r" % buckets
    assert buckets[-1][0] == float("inf")
    assert buckets[-1][1] >= 5
    count = metric_value(text, "hark_http_request_duration_seconds_count",
                         **({"route": "/healthz"} if labelled else {}))
    assert buckets[-1][1] == count


# -- CLI -------------------------------------------------------------------------------------------

def test_version():
    p = run_cli(["--version"])
    assert p.returncode == 0, p.stderr
    assert VERSION in p.stdout


def test_help():
    p = run_cli(["--help"])
    assert p.returncode == 0, p.stderr
    assert "serve" in p.stdout and "config" in p.stdout
    p = run_cli(["serve", "--help"])
    assert p.returncode == 0, p.stderr
    for flag in ("--port", "--bind", "--data-dir", "--admin-token", "--workers",
                 "--max-body-bytes"):
        assert flag in p.stdout, flag


def parse_config(text):
    out = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*=\s*(.*?)\s*$", line)
        if m:
            out[m.group(1).replace("-", "_")] = m.group(2)
    return out


def test_config_defaults(tmp_path):
    p = run_cli(["config", "--data-dir", str(tmp_path)])
    assert p.returncode == 0, p.stderr
    cfg = parse_config(p.stdout)
    assert cfg.get("port") == "8056", p.stdout
    assert cfg.get("bind") == "127.0.0.1", p.stdout
    assert str(tmp_path) in cfg.get("data_dir", ""), p.stdout
    assert cfg.get("max_body_bytes") in ("1048576", "1MiB", "1M"), p.stdout


def test_config_env_and_flags(tmp_path):
    p = run_cli(["config", "--data-dir", str(tmp_path)],
                env={"HARK_PORT": "9123", "HARK_BIND": "0.0.0.0"})
    assert p.returncode == 0, p.stderr
    cfg = parse_config(p.stdout)
    assert cfg.get("port") == "9123" and cfg.get("bind") == "0.0.0.0", p.stdout
    # a flag beats the environment
    p = run_cli(["config", "--data-dir", str(tmp_path), "--port", "9200"],
                env={"HARK_PORT": "9123"})
    assert p.returncode == 0, p.stderr
    assert parse_config(p.stdout).get("port") == "9200", p.stdout


def test_config_hides_admin_token(tmp_path):
    secret = "sekrit-" + uuid.uuid4().hex
    p = run_cli(["config", "--data-dir", str(tmp_path), "--admin-token", secret])
    assert p.returncode == 0, p.stderr
    assert secret not in p.stdout + p.stderr


def test_serve_unknown_flag(tmp_path):
    p = run_cli(["serve", "--data-dir", str(tmp_path), "--no-such-flag"])
    assert p.returncode != 0
    assert "no-such-flag" in p.stdout + p.stderr


@pytest.mark.parametrize("value", ["99999", "-1", "abc", "65536", ""])
def test_serve_bad_port(tmp_path, value):
    p = run_cli(["serve", "--data-dir", str(tmp_path), "--port", value])
    assert p.returncode != 0
    assert "port" in (p.stdout + p.stderr).lower()


def test_serve_bad_port_env(tmp_path):
    p = run_cli(["serve", "--data-dir", str(tmp_path)], env={"HARK_PORT": "99999"})
    assert p.returncode != 0
    assert "port" in (p.stdout + p.stderr).lower()


def test_unknown_command():
    p = run_cli(["no-such-command"])
    assert p.returncode != 0
    assert (p.stdout + p.stderr).strip()


def test_port_in_use(make_server):
    s = make_server()
    p = run_cli(["serve", "--port", str(s.port), "--data-dir", s.data_dir + "-2",
                 "--admin-token", "x"])
    assert p.returncode != 0
    assert (p.stdout + p.stderr).strip()


# -- generated admin token -------------------------------------------------------------------------

def test_generated_admin_token(make_server):
    s = make_server(admin_token=None)
    path = os.path.join(s.data_dir, "admin_token")
    assert os.path.exists(path), os.listdir(s.data_dir)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600, oct(mode)
    token = open(path).read().strip()
    assert len(token) >= 16
    log = s.log()
    assert re.search(r"admin_token=|admin token", log, re.I), log
    assert token in log
    r = s.request("GET", "/admin/users", headers={"X-Admin-API-Key": token})
    assert ok_json(r) == []
    err(s.request("GET", "/admin/users", headers={"X-Admin-API-Key": token + "x"}), 401)
    err(s.request("GET", "/admin/users"), 401)
    # restart: same token, not printed again
    s.restart()
    assert open(path).read().strip() == token
    assert token not in s.log()
    ok_json(s.request("GET", "/admin/users", headers={"X-Admin-API-Key": token}))


def test_generated_tokens_differ_between_data_dirs(make_server):
    a = make_server(admin_token=None)
    b = make_server(admin_token=None)
    ta = open(os.path.join(a.data_dir, "admin_token")).read().strip()
    tb = open(os.path.join(b.data_dir, "admin_token")).read().strip()
    assert ta != tb
    err(a.request("GET", "/admin/users", headers={"X-Admin-API-Key": tb}), 401)


def test_admin_token_from_env(make_server):
    secret = "env-admin-" + uuid.uuid4().hex
    s = make_server(admin_token=None, env={"HARK_ADMIN_TOKEN": secret})
    ok_json(s.request("GET", "/admin/users", headers={"X-Admin-API-Key": secret}))
    assert secret not in s.log(), "a configured admin token must not be logged"


def test_configured_admin_token_not_logged(server):
    assert server.admin_token not in server.log()


# -- signals ---------------------------------------------------------------------------------------

def test_sigint_exits_zero(make_server):
    s = make_server()
    assert s.stop(signal.SIGINT) == 0


def test_sigterm_exits_zero_with_keepalive_client(make_server):
    s = make_server()
    with requests.Session() as sess:
        assert sess.get(s.url + "/healthz", timeout=5).status_code == 200
        assert s.stop(signal.SIGTERM) == 0
