"""`make demo` on this checkout: it serves the portal and the demo customers' notices."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request

import pytest

from portal import ROOT
from tests.conftest import free_port


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback only)
        return response.status, response.read().decode()


@pytest.mark.slow
def test_make_demo_serves_the_portal_and_the_demo_mailbox(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env["PORTAL_INSTANCE_PATH"] = str(tmp_path)  # a fresh database, keys and all
    log = (tmp_path / "demo.log").open("w")
    server = subprocess.Popen(
        ["make", "--no-print-directory", "demo", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                status, page = _get(f"http://127.0.0.1:{port}/")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"make demo did not serve: {(tmp_path / 'demo.log').read_text()}")
                time.sleep(0.5)
        assert status == 200
        assert "Help after a data breach" in page
        status, mailbox = _get(f"http://127.0.0.1:{port}/dev/mail")
        assert status == 200
        english = mailbox.count("Notice of Data Breach from Example Corp")
        spanish = mailbox.count("Aviso de filtración de datos de Example Corp")
        assert (english, spanish) == (8, 4)  # four demo customers read Spanish
        status, message = _get(f"http://127.0.0.1:{port}/dev/mail/2")  # James, in English
        assert "What Information Was Involved" in message
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
    assert (tmp_path / "portal.db").exists()
