"""gunicorn.conf.py: the web processes as production runs them (docs/deploy.md)."""

from __future__ import annotations

import contextlib
import http.client
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from portal import ROOT
from portal.extensions import db
from tests.conftest import free_port

CONF = ROOT / "gunicorn.conf.py"


def serve(env: dict[str, str], folder: Path, **settings: str) -> tuple[subprocess.Popen, int]:
    """gunicorn with the repository's conf, settings given as PORTAL_WEB_* variables."""
    port = free_port()
    environ = {
        **os.environ,
        **env,
        "PORTAL_INSTANCE_PATH": str(folder / "instance"),
        "PYTHONPATH": str(ROOT),
        "PORTAL_WEB_BIND": f"127.0.0.1:{port}",
        **settings,
    }
    (folder / "instance").mkdir(exist_ok=True)
    with (folder / "gunicorn.log").open("a") as output:  # the server keeps its own copy
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(CONF), "wsgi:app"],
            cwd=ROOT,
            env=environ,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(OSError):
            if get(port, "/healthz")[0] == 200:
                return process, port
        time.sleep(0.2)
    stop(process)
    pytest.fail("gunicorn did not start: " + (folder / "gunicorn.log").read_text())


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(40)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def workers_of(process: subprocess.Popen, expected: int, within: float = 20) -> int:
    """How many workers the gunicorn master has, waiting up to `within` seconds for `expected`."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = time.monotonic() + within
    while True:
        count = len(children.read_text().split())
        if count == expected or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


def get(port: int, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_gunicorn_serves_the_portal_with_the_conf_and_logs_no_token_query_or_address(env, tmp_path):
    access_log = tmp_path / "access.log"
    process, port = serve(
        env, tmp_path, PORTAL_WEB_WORKERS="2", PORTAL_WEB_ACCESS_LOG=str(access_log)
    )
    try:
        status, headers, body = get(port, "/")
        assert status == 200 and b"<html" in body
        link = "/a/InR3byI.aGlkZGVu.c2VjcmV0LXRva2Vu"
        status, link_headers, _ = get(
            port,
            f"{link}?email=ann.secret%40example.com",
            {"Referer": "https://portal.example.test/a/AnotherSecretToken"},
        )
        assert status in (200, 404)
        # The master and the two workers the setting asked for. The master forks them one
        # after the other, and the first can answer before the second is born: wait for both.
        assert workers_of(process, expected=2) == 2
    finally:
        stop(process)
    assert process.returncode == 0, (tmp_path / "gunicorn.log").read_text()  # a clean stop
    logged = access_log.read_text()
    lines = logged.splitlines()
    assert len(lines) >= 3, logged  # /healthz, / and the link
    assert '"GET / HTTP/1.1" 200' in logged and headers["X-Request-ID"] in logged
    link_line = next(line for line in lines if link_headers["X-Request-ID"] in line)
    assert '"GET /a/[token] HTTP/1.1"' in link_line
    for secret in ("c2VjcmV0LXRva2Vu", "ann.secret", "email=", "AnotherSecretToken", "127.0.0.1"):
        assert secret not in logged, secret


def test_a_setting_that_is_not_a_number_stops_the_start(env, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(CONF), "--check-config", "wsgi:app"],
        cwd=ROOT,
        env={**os.environ, **env, "PORTAL_WEB_WORKERS": "lots", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "PORTAL_WEB_WORKERS must be a whole number" in done.stdout + done.stderr


def test_the_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("PORTAL_WEB_WORKERS", "7")
    monkeypatch.setenv("PORTAL_WEB_THREADS", "4")
    monkeypatch.setenv("PORTAL_WEB_BIND", "0.0.0.0:9000")
    monkeypatch.setenv("PORTAL_WEB_TIMEOUT", "45")
    monkeypatch.setenv("PORTAL_WEB_PRELOAD", "0")
    conf = runpy.run_path(str(CONF))
    assert (conf["workers"], conf["threads"], conf["bind"]) == (7, 4, ["0.0.0.0:9000"])
    assert (conf["timeout"], conf["preload_app"]) == (45, False)
    for name in ("PORTAL_WEB_WORKERS", "PORTAL_WEB_THREADS", "PORTAL_WEB_BIND"):
        monkeypatch.delenv(name)
    monkeypatch.delenv("PORTAL_WEB_PRELOAD")
    conf = runpy.run_path(str(CONF))
    assert conf["workers"] == 2 * (os.cpu_count() or 1) + 1 and conf["threads"] == 1
    assert conf["bind"] == ["127.0.0.1:8000"] and conf["preload_app"] is True
    # Only the app's ProxyFix (PORTAL_PROXY_HOPS) decides the scheme and the client's address.
    assert conf["forwarded_allow_ips"] == "" and conf["secure_scheme_headers"] == {}
    # Never the query string, the Referer, the user agent or the client's address.
    assert not {"%(r)s", "%(q)s", "%(f)s", "%(h)s", "%(a)s"} & set(
        conf["access_log_format"].replace("%(", " %(").split()
    )


def test_each_preloaded_worker_starts_with_no_connection_of_the_masters(app):
    # The master made the app and used the database before forking: a worker must not reuse the
    # socket the master (and every other worker) holds.
    pooled = db.engine.raw_connection()
    pooled.cursor().execute("SELECT 1")
    master_socket = pooled.dbapi_connection
    pooled.close()  # back to the pool, open
    assert db.engine.pool.checkedin() == 1
    conf = runpy.run_path(str(CONF))
    server = SimpleNamespace(
        cfg=SimpleNamespace(preload_app=True), app=SimpleNamespace(wsgi=lambda: app)
    )
    conf["post_fork"](server, None)
    assert db.engine.pool.checkedin() == 0
    # Left open for the master (close=False), so it is this test's to close.
    master_socket.close()
