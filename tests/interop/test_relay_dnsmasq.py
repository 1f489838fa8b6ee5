"""test_relay_dnsmasq.py — the relay's MX routing against Debian's dnsmasq
(issue 5: "a real DNS server the test starts on a loopback port"): alice@a.test
submits on instance A, A looks up b.test's MX through dnsmasq and delivers to
instance B on 127.0.0.2, and bob@b.test fetches the message over POP3 from
B. Skipped with the reason when dnsmasq is missing or cannot start."""

import shutil
import subprocess
import time

import pytest

from pobox_harness import Server, free_port
from relay_env import message, pick_relay_port, pop3_fetch, submit, wait_mail

AUTH = {"plaintext_without_tls": "yes", "failure_delay": "0"}


@pytest.fixture
def dnsmasq(tmp_path):
    exe = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not shutil.which(exe):
        pytest.skip("dnsmasq is not installed (Debian dnsmasq-base)")
    port = free_port()
    log = open(tmp_path / "dnsmasq.log", "wb")
    p = subprocess.Popen(
        [exe, "--no-daemon", "--port=%d" % port, "--listen-address=127.0.0.1",
         "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
         "--local=/test/", "--mx-host=b.test,mx.b.test,10",
         "--host-record=mx.b.test,127.0.0.2"]
        + (["--user=root"] if shutil.os.geteuid() == 0 else []),
        stdout=log, stderr=subprocess.STDOUT)
    time.sleep(0.3)
    if p.poll() is not None:
        log.close()
        pytest.skip("dnsmasq did not start: %s" % (tmp_path / "dnsmasq.log").read_text())
    yield "127.0.0.1:%d" % port
    p.terminate()
    p.wait(timeout=10)
    log.close()


def test_mail_from_a_reaches_b_through_mx_from_dnsmasq(tmp_path, dnsmasq):
    relay_port = pick_relay_port(["127.0.0.1", "127.0.0.2"])
    b = Server(tmp_path / "b", {"server": {"hostname": "mx.b.test", "domains": "b.test"},
                                "listen": {"smtp": "127.0.0.2:%d" % relay_port},
                                "auth": AUTH}, name="b")
    a = Server(tmp_path / "a", {"server": {"hostname": "mx.a.test", "domains": "a.test"},
                                "listen": {"smtp": "127.0.0.1:%d" % relay_port},
                                "relay": {"resolver": dnsmasq, "port": str(relay_port)},
                                "auth": AUTH}, name="a")
    try:
        b.start()
        a.start()
        bob = b.add_user("bob@b.test")
        alice = a.add_user("alice@a.test")
        msg, token = message(alice[0], bob[0], "through dnsmasq")
        submit(a, alice[0], alice[1], [bob[0]], msg)     # asserts the 250s
        wait_mail(b, bob[0], token)
        fetched = pop3_fetch(b, *bob)
        assert any(token.encode() in m for m in fetched)
        assert any(b"by mx.a.test (pobox)" in m and b"by mx.b.test (pobox)" in m
                   for m in fetched)
    finally:
        for s in (a, b):
            if s.proc is not None:
                assert s.stop() == 0
