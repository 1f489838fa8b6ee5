"""test_roundtrip.py — a message's whole trip through pobox with real
clients: msmtp submits it (587 with STARTTLS, 465 with implicit TLS), mpop
or fetchmail fetches it over POP3, and what arrives is byte for byte what
was sent, apart from the trace fields pobox put on top (Return-Path,
Delivered-To, Received) and a Message-ID and Date added only when the
message had none."""

import os
import shutil
import subprocess

import pytest

from pobox_harness import (Msmtp, TRACE_FIELDS, check_received, header_fields,
                           remove_fields, unique)

pytestmark = pytest.mark.skipif(
    not (shutil.which("msmtp") and shutil.which("mpop") and shutil.which("fetchmail")),
    reason="msmtp, mpop and fetchmail are needed")

SERVER_CONFIG = {"auth": {"plaintext_without_tls": "no", "failure_delay": "0"}}


def tricky_message(sender, to, with_id_and_date=True):
    """LF line ends (msmtp sends CRLF; POP3 clients write LF)."""
    head = ("From: Ålice Example <%s>\n"
            "To: %s\n"
            "Subject: =?utf-8?q?round_trip_=C3=A9?= %s\n"
            "X-Folded: one\n"
            "\ttwo\n"
            "  three\n"
            "X-Empty:\n"
            "MIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\n"
            "Content-Transfer-Encoding: 8bit\n" % (sender, to, unique("rt")))
    if with_id_and_date:
        head += ("Date: Tue, 03 Jan 2023 04:05:06 -0800\n"
                 "Message-ID: <%s@client.example.net>\n" % unique("rt"))
    body = ("Grüße aus dem Test.\n"
            ".a line with a leading dot\n"
            "..two\n"
            ".\n"
            "From the start of a line\n"
            ">From quoted\n"
            "trailing spaces   \n"
            "\ttab\n"
            "\n"
            "%s\n"
            "\n"
            "\n" % ("w" * 990))
    return (head + "\n" + body).encode("utf-8")


class Mpop:
    def __init__(self, home, port, user, pw):
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.rc = home / "mpoprc"
        self.out = home / "mpop.out"
        self.rc.write_text(
            "defaults\ntls on\ntls_starttls off\ntls_certcheck off\nkeep on\n"
            "received_header off\ntimeout 20\nuidls_file %s\n"
            "account test\nhost 127.0.0.1\nport %d\nauth user\nuser %s\npassword %s\n"
            'delivery mda "cat > %s"\n' % (home / "uidls", port, user, pw, self.out))
        os.chmod(self.rc, 0o600)

    def fetch(self):
        r = subprocess.run(["mpop", "-C", str(self.rc), "test"], capture_output=True,
                           timeout=60, env=dict(os.environ, HOME=str(self.home)))
        assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")[-3000:]
        return self.out.read_bytes()


class Fetchmail:
    def __init__(self, home, port, user, pw):
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.rc = home / "fetchmailrc"
        self.out = home / "fetchmail.out"
        self.rc.write_text(
            "set no bouncemail\nset no syslog\nset invisible\n"
            "poll 127.0.0.1 with proto POP3 port %d uidl auth password timeout 20\n"
            '    user "%s" there with password "%s" is "root" here\n'
            '    options keep no rewrite ssl no sslcertck\n'
            '    mda "cat > %s"\n' % (port, user, pw, self.out))
        os.chmod(self.rc, 0o600)

    def fetch(self):
        r = subprocess.run(["fetchmail", "-f", str(self.rc), "-i", str(self.home / "ids"),
                            "--pidfile", str(self.home / "pid"), "--nodetach"],
                           capture_output=True, timeout=60,
                           env=dict(os.environ, HOME=str(self.home)))
        assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")[-3000:]
        return self.out.read_bytes()


FETCHERS = {"mpop": Mpop, "fetchmail": Fetchmail}


@pytest.mark.parametrize("fetcher", ["mpop", "fetchmail"])
@pytest.mark.parametrize("tls", ["starttls", "implicit"])
@pytest.mark.parametrize("complete", [True, False], ids=["with-id-date", "without-id-date"])
def test_roundtrip(server, tmp_path, fetcher, tls, complete):
    sender, spw = server.add_user()
    rcpt, rpw = server.add_user()
    original = tricky_message(sender, rcpt, complete)
    port = server.submission_port if tls == "starttls" else server.submissions_port
    m = Msmtp(tmp_path / "msmtp", port, sender, spw, tls=tls, auth="plain")
    r = m.send([rcpt], original)
    assert r.returncode == 0, m.output(r)

    got = FETCHERS[fetcher](tmp_path / fetcher, server.pop3s_port, rcpt, rpw).fetch()

    # pobox's trace fields are on top, in one block
    fields, _ = header_fields(got)
    names = [n for n, _ in fields]
    top = names[:names.index("from")]
    assert sorted(n for n in top if n in TRACE_FIELDS) == sorted(TRACE_FIELDS) and \
        set(top) <= set(TRACE_FIELDS) | {"message-id", "date"}, \
        "fields above the original ones: %r" % top
    trace, rest = remove_fields(got, set(TRACE_FIELDS))
    assert trace.get("return-path") == [b"Return-Path: <%s>\n" % sender.encode()], trace
    assert len(trace.get("delivered-to", [])) == 1, trace
    assert len(trace.get("received", [])) == 1, trace
    check_received(trace["received"][0], "ESMTPSA")
    assert spw.encode() not in got

    if complete:
        assert rest == original, "changed on the way:\n--- sent\n%r\n--- fetched\n%r" % (
            original, rest)
    else:
        added, rest2 = remove_fields(rest, {"message-id", "date"})
        assert len(added.get("message-id", [])) == 1 and len(added.get("date", [])) == 1, added
        assert rest2 == original, "changed on the way:\n--- sent\n%r\n--- fetched\n%r" % (
            original, rest2)
