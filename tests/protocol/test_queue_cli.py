"""test_queue_cli.py — `pobox queue list | flush | delete ID | bounce ID`
(SPEC section 1, issue 5) on a queue filled through A's submission port
while the relay cannot deliver: relay.smarthost points at a closed port
and relay.retry_schedule is one hour, so every message stays queued (with
the queue runner: after one failed attempt whose error `queue list`
shows).

The commands work on data_dir/queue directly (docs/storage.md), with or
without a running queue runner; only test_list_shows_the_last_error needs
the runner's first attempt."""

import os
import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pobox_harness import DEAD_SMARTHOST  # noqa: E402
from relay_env import (Report, check_group, envelope, find, message, pop3_find,  # noqa: E402
                       queue_state, queued_id, return_path, stays, submit, wait_mail,
                       wait_until)

SERVER_CONFIG = {
    "server": {"hostname": "mx.a.test", "domains": "a.test"},
    "relay": {"smarthost": DEAD_SMARTHOST, "smarthost_tls": "none",
              "retry_schedule": "1h"},
}
ALICE = "alice@a.test"


@pytest.fixture(scope="module")
def alice(server):
    return server.add_user(ALICE)


def queue_msg(server, alice, rcpts=("bob@b.test",), subject="queued"):
    """Submits a message from alice to rcpts; (queue ID, token)."""
    msg, token = message(ALICE, ", ".join(rcpts), subject)
    r = submit(server, alice[0], alice[1], list(rcpts), msg)
    return queued_id(r), token


def cli(server, *args):
    r = server.cli("queue", *args, timeout=30)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def listing(server):
    rc, out, err = cli(server, "list")
    assert rc == 0, "queue list: rc %d, stderr %r" % (rc, err)
    return out


def entry_text(out, qid):
    """The lines of `queue list` output about qid: its line and the
    indented recipient lines under it."""
    lines = out.splitlines()
    for i, l in enumerate(lines):
        if l.startswith(qid):
            block = [l]
            for nxt in lines[i + 1:]:
                if nxt[:1] in (" ", "\t"):
                    block.append(nxt)
                else:
                    break
            return "\n".join(block)
    return None


# ---------------------------------------------------------------- list

def test_list_shows_id_sender_and_recipients(server, alice):
    rcpts = ("bob@b.test", "carol@c.test")
    qid, _ = queue_msg(server, alice, rcpts, "listed")
    assert re.match(r"^[0-9A-F]{20}$", qid), qid
    out = listing(server)
    block = entry_text(out, qid)
    assert block is not None, "queue list does not show %s:\n%s" % (qid, out)
    assert "<%s>" % ALICE in block.splitlines()[0], block
    for r in rcpts:
        assert re.search(r"(?m)^\s+%s\s" % re.escape(r), block), "%s missing:\n%s" % (r, block)
    assert "pending" in block, block


def test_list_shows_the_last_error(server, alice):
    """With the queue runner: the first attempt at the dead smarthost fails
    (connection refused, a temporary failure) and `queue list` shows that
    error and an attempt count of 1; the message stays queued."""
    qid, _ = queue_msg(server, alice, subject="last error")

    def shown():
        block = entry_text(listing(server), qid)
        return block if block and "error=" in block else None
    block = wait_until(shown, 20, 0.5,
                       lambda: "an error= for %s in `queue list` (no queue runner yet?):\n%s"
                       % (qid, entry_text(listing(server), qid)))
    assert "attempts=1" in block, block
    assert re.search(r"(?i)refused|connect", block), block
    env = envelope(server, qid)
    assert env is not None and env[1][0]["state"] == "pending", env


def test_list_on_an_empty_queue_prints_nothing(server_factory):
    srv = server_factory(SERVER_CONFIG)
    try:
        out = listing(srv)
        assert out.strip() == "", out
    finally:
        assert srv.stop() == 0


# ---------------------------------------------------------------- flush

def test_flush_makes_every_pending_recipient_due(server, alice):
    qid, _ = queue_msg(server, alice, ("bob@b.test", "carol@c.test"), "flushed")
    before = envelope(server, qid)
    assert before is not None, queue_state(server)
    t0 = int(time.time())
    rc, out, err = cli(server, "flush")
    assert rc == 0, (rc, out, err)
    assert out == "", out
    after = envelope(server, qid)
    assert after is not None, "flush removed the entry"
    for old, new in zip(before[1], after[1]):
        assert new["address"] == old["address"]
        if new["state"] != "pending":
            continue
        # due now, or already retried by the queue runner
        assert int(new["next_attempt"]) <= t0 + 2 or \
            int(new["attempts"]) > int(old["attempts"]), (old, new)
    block = entry_text(listing(server), qid)
    assert block is not None and "pending" in block, block


# ---------------------------------------------------------------- delete

def test_delete_removes_the_message_silently(server, alice):
    qid, token = queue_msg(server, alice, subject="deleted")
    assert (server.queue_dir / "env" / qid).exists() and (server.queue_dir / "msg" / qid).exists()
    rc, out, err = cli(server, "delete", qid)
    assert (rc, out, err) == (0, "", ""), (rc, out, err)
    assert not (server.queue_dir / "env" / qid).exists()
    assert not (server.queue_dir / "msg" / qid).exists()
    assert entry_text(listing(server), qid) is None
    # silently: no notice to the sender
    assert stays(lambda: not find(server, ALICE, token), 3), \
        "a notice reached alice after queue delete"
    rc, out, err = cli(server, "delete", qid)
    assert rc == 1 and "no such message" in err, (rc, out, err)


@pytest.mark.parametrize("bad", ["nonsense", "../../users", "0123456789ABCDEF012", "0123456789abcdef0123",
                                 "0123456789ABCDEF0123/"])
def test_delete_and_bounce_refuse_what_is_not_an_id(server, alice, bad):
    for cmd in ("delete", "bounce"):
        rc, out, err = cli(server, cmd, bad)
        assert rc == 2 and "not a queue ID" in err, (cmd, bad, rc, out, err)
    assert (server.data_dir / "users").exists()


def test_usage_errors(server):
    for args in ([], ["delete"], ["bounce"], ["list", "extra"], ["flush", "x"], ["frobnicate"]):
        rc, out, err = cli(server, *args)
        assert rc == 2 and "usage" in err.lower(), (args, rc, out, err)


# ---------------------------------------------------------------- bounce

def test_bounce_returns_the_message_to_the_sender(server, alice):
    rcpts = ("bob@b.test", "carol@c.test")
    qid, token = queue_msg(server, alice, rcpts, "bounced by the admin")
    rc, out, err = cli(server, "bounce", qid)
    assert rc == 0, (rc, out, err)
    assert not (server.queue_dir / "env" / qid).exists(), queue_state(server)
    assert not (server.queue_dir / "msg" / qid).exists(), queue_state(server)
    stored = wait_mail(server, ALICE, token, "multipart/report", timeout=10)[0]
    assert return_path(stored) == "<>", "a notice must come from the null sender: %r" % stored[:500]
    # via POP3, as alice reads it
    got = pop3_find(server, alice[0], alice[1], token, "multipart/report")
    assert len(got) == 1, "alice's maildrop has %d notices about %s" % (len(got), token)
    rep = Report(got[0])
    assert rep.per_message.get("reporting-mta", "").lower().endswith("mx.a.test"), rep
    for r in rcpts:
        check_group(rep.rcpt(r), "failed", 5)
    assert token.encode() in rep.returned, "the original headers are not returned: %r" % rep.returned[:1000]
    assert b"Subject: bounced by the admin" in rep.returned, rep.returned[:1000]
    m = email_to(got[0])
    assert m.lower() == ALICE, m


def email_to(raw):
    import email
    return email.message_from_bytes(raw)["To"].strip().strip("<>")


def test_bounce_of_an_unknown_id_fails(server, alice):
    rc, out, err = cli(server, "bounce", "0123456789ABCDEF0123")
    assert rc == 1 and err.strip(), (rc, out, err)


def test_bounce_of_a_null_sender_message_sends_nothing(server, alice):
    """A message from <> (a bounce arriving on port 25 for an alias that
    forwards to another domain) is queued with an empty sender; `queue
    bounce` removes it and sends no notice anywhere."""
    fwd = "fwd-%s@a.test" % os.urandom(3).hex()
    server.alias_add(fwd, "far-%s@c.test" % os.urandom(3).hex())
    msg, token = message("MAILER-DAEMON@c.test", fwd, "null sender")
    before = {p.name for p in server.queue_files("env")}
    with server.smtp_session("smtp", starttls=False) as c:
        r = c.send_mail("", [fwd], msg)
        assert r.code == 250, "%r\n%s" % (r, c.transcript())
        qid = queued_id(r)
    new = [p.name for p in server.queue_files("env") if p.name not in before]
    assert len(new) == 1, "the forwarded message was not queued: %r" % (r,)
    assert new[0] == qid, (new, qid)
    env = envelope(server, qid)
    assert env[0].get("sender", "") == "", env
    queued = {p.name for p in server.queue_files("env")}
    mail_files = sorted(str(p) for p in (server.data_dir / "mail").rglob("*") if p.is_file())
    rc, out, err = cli(server, "bounce", qid)
    assert rc == 0, (rc, out, err)
    assert not (server.queue_dir / "env" / qid).exists()
    assert not (server.queue_dir / "msg" / qid).exists()
    time.sleep(1)
    assert {p.name for p in server.queue_files("env")} == queued - {qid}, \
        "a notice to a null sender was queued: %s" % queue_state(server)
    assert sorted(str(p) for p in (server.data_dir / "mail").rglob("*") if p.is_file()) == mail_files, \
        "a notice was delivered for a null-sender message"
