"""test_bench_smoke.py — keeps the benchmark's load generator
(bench/loadgen, `pobox-loadgen`) working: about five seconds of each POP3
and SMTP mode against a real `pobox serve`, checking what it reports
against what the server did (sessions, octets, files in the Maildir), and
that it notices failures. It asserts no speed: that is `make bench`'s job
(issue 6)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from pobox_harness import POBOX, make_message

LOADGEN = Path(os.environ.get("POBOX_LOADGEN", POBOX.parent / "bench" / "pobox-loadgen"))

SERVER_CONFIG = {"auth": {"plaintext_without_tls": "yes", "failure_delay": "0"},
                 "limits": {"max_connections_per_ip": "500"}}


def loadgen(*args, stdin=subprocess.DEVNULL, timeout=60):
    r = subprocess.run([str(LOADGEN)] + [str(a) for a in args], capture_output=True,
                       timeout=timeout, stdin=stdin)
    lines = [ln for ln in r.stdout.decode().splitlines() if ln.startswith("{")]
    return r.returncode, [json.loads(ln) for ln in lines], r.stderr.decode()


@pytest.fixture(scope="module")
def users(server, tmp_path_factory):
    """Two users with three messages each, in a load generator users file."""
    path = tmp_path_factory.mktemp("lg") / "users"
    lines = []
    for i in range(2):
        user, pw = server.add_user()
        for j in range(3):
            server.deliver(user, make_message("m%d" % j, body=b"x" * (1000 * (j + 1))))
        lines.append("%s %s" % (user, pw))
    path.write_text("# address password\n" + "\n".join(lines) + "\n")
    return path


def test_loadgen_is_built():
    assert LOADGEN.exists(), "make test builds %s" % LOADGEN


def test_pop3_poll_counts_sessions_without_errors(server, users):
    rc, out, err = loadgen("pop3-poll", "-q", "-p", server.pop3_port, "--users", users,
                           "-c", 2, "-d", 1)
    assert rc == 0, err
    res = out[-1]
    assert res["scenario"] == "pop3-poll"
    assert res["errors"] == 0, res["error_samples"]
    assert res["sessions"] >= 1
    assert res["sessions_per_s"] > 0
    assert res["latency_ms"]["p50"] > 0
    assert res["latency_ms"]["max"] >= res["latency_ms"]["p50"]
    assert "quit" in server.log_text()


def test_pop3s_download_reads_every_message(server, users):
    rc, out, err = loadgen("pop3-download", "-q", "--tls", "-p", server.pop3s_port,
                           "--users", users, "-c", 2, "-n", 4)
    assert rc == 0, err
    res = out[-1]
    assert res["errors"] == 0, res["error_samples"]
    assert res["sessions"] == 4
    assert res["messages"] == 12            # 4 sessions x 3 messages
    assert res["bytes_in"] >= 4 * (1000 + 2000 + 3000)


def test_wrong_password_is_counted_as_error(server, users, tmp_path):
    bad = tmp_path / "bad"
    first = users.read_text().splitlines()[1].split()[0]
    bad.write_text("%s wrong-password\n" % first)
    rc, out, err = loadgen("pop3-login", "-q", "-p", server.pop3_port, "--users", bad,
                           "-c", 1, "-n", 2)
    assert rc == 0, err
    res = out[-1]
    assert res["errors"] == 2
    assert any("-ERR" in s for s in res["error_samples"]), res["error_samples"]


def test_smtp_submit_files_equal_250_replies(server, users):
    user = users.read_text().splitlines()[1].split()[0]
    before = len(server.message_files(user))
    rc, out, err = loadgen("smtp-submit", "-q", "--starttls", "-p",
                           server.submission_port, "--users", users, "-c", 2,
                           "-d", 1, "--messages", 2, "--rcpt", user)
    assert rc == 0, err
    res = out[-1]
    assert res["errors"] == 0, res["error_samples"]
    assert res["smtp_250"] >= 2
    assert len(server.message_files(user)) - before == res["smtp_250"]


def test_idle_sessions_answer_noop_after_the_hold(server, users):
    rc, out, err = loadgen("pop3-idle", "-q", "--tls", "-p", server.pop3s_port,
                           "--users", users, "-c", 2, "--hold", 0.5)
    assert rc == 0, err
    ready, done = out[0], out[-1]
    assert ready["phase"] == "ready" and ready["sessions"] == 2 and ready["errors"] == 0
    assert done["phase"] == "done" and done["answered"] == 2


def test_stopped_server_is_reported(server_factory, users):
    srv = server_factory(SERVER_CONFIG)
    port = srv.pop3_port
    srv.stop()
    rc, out, err = loadgen("pop3-login", "-q", "-p", port, "--users", users,
                           "-c", 1, "-n", 1, "--timeout", 2)
    assert rc == 1
    assert err.strip()
