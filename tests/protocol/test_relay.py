"""test_relay.py — the outbound relay end to end (issue 5, SPEC section 5,
docs/relay.md): the queue runner inside `pobox serve` delivers queued mail
via MX records (relay.resolver pointing at tests/dns_server.py, relay.port =
the port every test MTA listens on) or via relay.smarthost.

Covered: alice@a.test -> bob@b.test between two instances (POP3 at B, both
Received lines); one connection for all recipients of a domain, SIZE, dot
stuffing and CRLF; 4xx (greeting, MAIL, RCPT, end of data) retried per
relay.retry_schedule; `queue flush` and `queue list` with the runner; 5xx
(MAIL, RCPT, end of data) -> RFC 3464 bounce (Action, Status, Diagnostic-
Code, Remote-MTA, Reporting-MTA, original headers, from <>); partial
failure; expiry (relay.max_queue_time) for an unreachable host; delay
notice (relay.delay_warning); null MX, NXDOMAIN (bounce) and SERVFAIL
(retry); no notice to a null sender; NOTIFY=NEVER, NOTIFY=SUCCESS
("relayed" from A for a peer without DSN, nothing from A when the peer
offers DSN, end to end through B); DSN parameters passed on; SMTPUTF8 to a
peer without it (RFC 6533 bounce); misbehaving peers (garbage, 10,000-line
reply, close before and after the data); routing (A record without MX, MX
preferences and fallback, an IPv6 MX host); the delivery log line; a
restart picking up the queue; SIGTERM and kill -9 in the middle of DATA
(delivered exactly once); mail loops (too many Received lines, an alias
ping-pong between A and B); smarthost with AUTH over STARTTLS (a b.test
instance; tests/smtp_peer.py for what is sent before and after TLS, and for
a smarthost without STARTTLS).

Instances (tests/relay_env.py): B (b.test, port 25 on 127.0.0.2:P) for the
whole module with bob@b.test; a fresh A (a.test, port 25 on 127.0.0.1:P,
alice@a.test) per test with that test's relay.* keys; scripted peers
(relay_env.Peer, in this process) at mx.pN.test = 127.0.1.N:P. Every wait
is bounded (20-25 s); every process is stopped at the end of its test or
module."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pobox_harness import Smtp, free_port  # noqa: E402
from relay_env import (A_DOMAIN, B_ADDR, B_DOMAIN, B_HOST, PYTHON, ROUTE_ADDRS, TESTS, RelayEnv, Report,  # noqa: E402
                       check_group, envelope, ipv6_loopback, find, message, pop3_find,
                       queue_empty, queue_state, queued_id, received_lines,
                       return_path, stays, submit, wait_mail, wait_until)

ALICE = "alice@" + A_DOMAIN
WAIT = 20.0


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = RelayEnv(tmp_path_factory.mktemp("relay"))
    try:
        e.start_b()
    except BaseException:
        e.close()
        raise
    yield e
    problems = e.close()
    if problems:
        pytest.fail("relay env teardown: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def make_a(env):
    """make(**relay_keys) -> a started A; stopped (exit 0 expected) at the
    end of the test, with the peers made during the test."""
    made = []
    first_peer = len(env.peers)

    def make(config=None, **relay):
        a = env.make_a(relay=relay, config=config)
        made.append(a)
        return a
    yield make
    for p in env.peers[first_peer:]:
        p.close()
    problems = []
    for a in made:
        problems += env.stop_server(a)
        env.servers.remove(a)
    if problems:
        pytest.fail("A teardown: " + "; ".join(problems), pytrace=False)


def send(a, rcpts, subject, body=None, extra=b"", **kw):
    """alice submits on A; (queue ID, token, the message as submitted)."""
    msg, token = message(ALICE, ", ".join(rcpts), subject,
                         **({"body": body} if body is not None else {}), extra=extra)
    r = submit(a, a.alice[0], a.alice[1], list(rcpts), msg, **kw)
    return queued_id(r), token, msg


def wait_queue_empty(a, timeout=WAIT):
    wait_until(lambda: queue_empty(a), timeout, 0.25,
               lambda: "A's queue to empty: %s\n--- A log tail:\n%s" % (
                   queue_state(a), a.log_text()[-2500:]))


def wait_delivered(peer, address, count=1, timeout=WAIT, a=None):
    return wait_until(lambda: len(peer.delivered_to(address)) >= count and peer.delivered_to(address),
                      timeout, 0.2,
                      lambda: "%d delivery(ies) to %s at the peer; %s; A queue: %s%s" % (
                          count, address, peer.summary(), queue_state(a) if a else "?",
                          ("\n--- A log tail:\n" + a.log_text()[-2500:]) if a else ""))


def bounce_for(a, token, timeout=WAIT):
    """The one report about token in alice's mailbox, read via POP3."""
    wait_mail(a, ALICE, token, "multipart/report", timeout=timeout)
    got = pop3_find(a, a.alice[0], a.alice[1], token, "multipart/report")
    assert len(got) == 1, "alice has %d reports about %s" % (len(got), token)
    return got[0], Report(got[0])


def no_report(a, token, seconds=3.0):
    return stays(lambda: not find(a, ALICE, token), seconds)


def mail_files(srv):
    return sorted(str(p) for p in (srv.data_dir / "mail").rglob("*") if p.is_file())


# ---------------------------------------------------------------- MX delivery between two pobox instances

def test_alice_to_bob_via_mx(env, make_a):
    a = make_a()
    b, (bob, bob_pw) = env.b, env.bob
    qid, token, msg = send(a, [bob], "hello bob")
    wait_mail(b, bob, token, extra="\n--- A queue: %s\n--- A log tail:\n%s" % (
        queue_state(a), a.log_text()[-2500:]))
    got = pop3_find(b, bob, bob_pw, token)
    assert len(got) == 1, "bob has %d copies" % len(got)
    m = got[0]
    # the message itself arrived unchanged below the trace fields
    assert m.endswith(msg.split(b"\r\n\r\n", 1)[1]), m[-500:]
    for h in (b"From: " + ALICE.encode(), b"Subject: hello bob " + token.encode(),
              b"Message-ID: <" + token.encode() + b"@a.test>"):
        assert h in m, (h, m[:2000])
    rec = received_lines(m)
    assert len(rec) >= 2, rec
    assert re.search(rb"\bby mx\.b\.test\b", rec[0]), "B's Received: on top: %r" % rec
    assert re.search(rb"\bwith ESMTPS?\b", rec[0]), rec[0]
    assert b"127.0.0.1" in rec[0] or b"mx.a.test" in rec[0], rec[0]
    assert re.search(rb"\bby mx\.a\.test\b", rec[1]), "A's Received: below it: %r" % rec
    assert re.search(rb"\bwith ESMTPSA\b", rec[1]), rec[1]
    assert qid.encode() in rec[1], "A's Received: names the queue ID %s: %r" % (qid, rec[1])
    assert return_path(m) == "<%s>" % ALICE, m[:500]
    wait_queue_empty(a)
    assert no_report(a, token, 1), "alice got a notice about a delivered message"


def test_several_recipients_at_one_domain_share_one_connection(env, make_a):
    peer, dom = env.peer()
    a = make_a()
    rcpts = ["one@" + dom, "two@" + dom, "three@" + dom]
    body = (b"line one\r\n.a line with a leading dot\r\n..two dots\r\n.\r\n"
            b"the line above was a lone dot\r\n" + b"x" * 900 + b"\r\nlast\r\n")
    qid, token, msg = send(a, rcpts, "three recipients", body=body)
    d = wait_delivered(peer, rcpts[0], a=a)
    wait_queue_empty(a)
    assert len(peer.deliveries) == 1, peer.summary()
    assert sorted(r[0] for r in d[0]["rcpts"]) == sorted(rcpts), peer.summary()
    assert peer.connections == 1, peer.summary()
    assert d[0]["mail"] == ALICE
    assert re.search(r"(?i)\bSIZE=\d+", d[0]["mail_params"]), \
        "SIZE= is announced when the peer offers SIZE: %r" % d[0]["mail_params"]
    data = d[0]["data"]
    # what the peer got: A's trace fields on top of the message as submitted,
    # dot-stuffed on the wire and CRLF throughout
    assert data.endswith(msg), "the peer's copy does not end with the original:\n%r" % data[-1500:]
    top = data[:len(data) - len(msg)]
    assert top.lower().startswith(b"received: "), top
    assert b"\n" not in data.replace(b"\r\n", b""), "bare LF in what was sent"
    assert no_report(a, token, 1)


# ---------------------------------------------------------------- temporary failures

@pytest.mark.parametrize("stage,reply", [
    ("greeting", "421 4.3.2 too busy right now"),
    ("mail", "451 4.3.0 local problem, try again"),
    ("rcpt", "451 4.7.1 greylisted, come back later"),
    ("dataend", "452 4.3.1 insufficient system storage"),
])
def test_temporary_failure_is_retried_then_delivered(env, make_a, stage, reply):
    peer, dom = env.peer()
    peer.once[stage] = [reply]
    a = make_a(retry_schedule="1s")
    rcpt = "grey@" + dom
    t0 = time.monotonic()
    qid, token, msg = send(a, [rcpt], "retried after " + stage)
    wait_delivered(peer, rcpt, a=a)
    assert peer.connections >= 2, peer.summary()
    assert time.monotonic() - t0 >= 0.9, "the retry came before relay.retry_schedule's 1s"
    wait_queue_empty(a)
    assert stays(lambda: len(peer.delivered_to(rcpt)) == 1, 2.5), \
        "delivered more than once: %s" % peer.summary()
    assert peer.delivered_to(rcpt)[0]["data"].endswith(msg)
    assert no_report(a, token, 0.5), "a notice for a message that was delivered"


def test_flush_retries_at_once(env, make_a):
    """relay.retry_schedule 1h: after the first failed attempt nothing
    happens for an hour, but `pobox queue flush` makes the runner retry now."""
    peer, dom = env.peer()
    peer.once["rcpt"] = ["451 4.3.0 first attempt fails"]
    a = make_a(retry_schedule="1h")
    rcpt = "flush@" + dom
    qid, token, msg = send(a, [rcpt], "flushed")
    wait_until(lambda: len(peer.transactions) >= 1, WAIT, 0.2,
               lambda: "a first attempt; %s" % peer.summary())
    env1 = wait_until(lambda: (lambda e: e if e and int(e[1][0]["attempts"]) >= 1 else None)(
        envelope(a, qid)), 10, 0.2, lambda: "attempts=1 recorded: %s" % queue_state(a))
    assert "last_error" in env1[1][0] and "first attempt fails" in env1[1][0]["last_error"], env1
    time.sleep(1.5)
    assert not peer.deliveries, "retried before an hour had passed: %s" % peer.summary()
    r = a.cli("queue", "flush")
    assert r.returncode == 0, r
    wait_delivered(peer, rcpt, timeout=15, a=a)
    wait_queue_empty(a)


def test_queue_list_shows_the_peers_error(env, make_a):
    peer, dom = env.peer()
    peer.always["rcpt"] = "450 4.2.1 mailbox busy PEERSAYS-%s" % dom
    a = make_a(retry_schedule="1h")
    qid, token, _ = send(a, ["busy@" + dom], "listed error")

    def listed():
        r = a.cli("queue", "list")
        out = r.stdout.decode(errors="replace")
        return out if "PEERSAYS-" + dom in out else None
    out = wait_until(listed, WAIT, 0.5, lambda: "the peer's text in `queue list`: %r; %s" % (
        a.cli("queue", "list").stdout, peer.summary()))
    assert qid in out and "<%s>" % ALICE in out and "busy@" + dom in out, out
    assert re.search(r"attempts=[1-9]", out), out


# ---------------------------------------------------------------- permanent failures: bounces

@pytest.mark.parametrize("stage,reply", [
    ("rcpt", "550 5.1.1 <nobody@%s>: no such user here, says PEER-%s"),
    ("dataend", "554 5.6.0 content refused, says PEER-%s"),
    ("mail", "553 5.7.1 sender refused, says PEER-%s"),
])
def test_permanent_failure_bounces_to_the_sender(env, make_a, stage, reply):
    peer, dom = env.peer()
    marker = os.urandom(4).hex()
    text = reply % ((dom, marker) if reply.count("%s") == 2 else (marker,))
    peer.always[stage] = text
    a = make_a(retry_schedule="1h")
    rcpt = "nobody@" + dom
    qid, token, msg = send(a, [rcpt], "will bounce at " + stage)
    stored = wait_mail(a, ALICE, token, "multipart/report")[0]
    raw, rep = bounce_for(a, token)
    assert return_path(stored) == "<>", "bounces come from the null sender: %r" % stored[:400]
    assert re.search(rb"(?im)^To:.*alice@a\.test", raw), raw[:1500]
    g = rep.rcpt(rcpt)
    check_group(g, "failed", 5, diagnostic="PEER-" + marker)
    assert rep.per_message.get("reporting-mta", "").lower().endswith("mx.a.test"), rep.per_message
    # the original headers come back
    assert b"Subject: will bounce at " + stage.encode() + b" " + token.encode() in rep.returned, \
        rep.returned[:1500]
    assert b"Message-ID: <" + token.encode() + b"@a.test>" in rep.returned, rep.returned[:1500]
    wait_queue_empty(a)
    assert not peer.deliveries, peer.summary()
    assert stays(lambda: len(find(a, ALICE, token)) == 1, 2), "more than one bounce"
    # the details, all reported together
    problems = []
    # RFC 3464 2.3.6: "smtp; " and the reply as the peer sent it
    if not re.match(r"(?i)^smtp; *%s\b" % re.escape(text[:9]), g.get("diagnostic-code", "")):
        problems.append("Diagnostic-Code is not 'smtp; %s...'" % text[:9])
    # the peer's enhanced status code is the Status (RFC 3463; RFC 3464 2.3.4)
    if g.get("status") != text.split(" ")[1]:
        problems.append("Status is not the peer's %s" % text.split(" ")[1])
    # RFC 3464 2.3.5: the MTA that gave the reply
    if not re.search(r"(?i)^dns; *mx\.%s\b|127\.0\.1\.\d+" % re.escape(dom), g.get("remote-mta", "")):
        problems.append("no Remote-MTA naming mx.%s" % dom)
    assert not problems, "; ".join(problems) + ":\n%r" % g


def test_only_the_failed_recipient_bounces(env, make_a):
    peer, dom = env.peer()
    good, bad = "good@" + dom, "bad@" + dom
    peer.always["rcpt:" + bad] = "550 5.1.1 <%s>: unknown here" % bad
    a = make_a(retry_schedule="1h")
    qid, token, msg = send(a, [good, bad], "half bounces")
    wait_delivered(peer, good, a=a)
    raw, rep = bounce_for(a, token)
    assert len(rep.rcpts) == 1, "the bounce names only the failed recipient: %r" % rep
    check_group(rep.rcpt(bad), "failed", 5, diagnostic="unknown here")
    wait_queue_empty(a)
    assert len(peer.deliveries) == 1 and [r[0] for r in peer.deliveries[0]["rcpts"]] == [good]


def test_unreachable_host_bounces_after_max_queue_time(env, make_a):
    """mx.dead.test is 127.0.0.9, where nothing listens: every attempt is
    refused (temporary); with relay.max_queue_time = 3s the message bounces
    once that time is up, not before."""
    a = make_a(retry_schedule="1s", max_queue_time="3s")
    rcpt = "someone@dead.test"
    t0 = time.monotonic()
    qid, token, msg = send(a, [rcpt], "never arrives")
    stored = wait_mail(a, ALICE, token, "multipart/report", timeout=25)[0]
    elapsed = time.monotonic() - t0
    assert elapsed >= 2.5, "bounced after %.1f s, before relay.max_queue_time (3s)" % elapsed
    raw, rep = bounce_for(a, token)
    g = rep.rcpt(rcpt)
    check_group(g, "failed", "45")
    assert return_path(stored) == "<>"
    assert b"Subject: never arrives " + token.encode() in rep.returned
    wait_queue_empty(a)


def test_delay_notice_while_still_retrying(env, make_a):
    peer, dom = env.peer()
    peer.always["rcpt"] = "451 4.3.0 still busy, says the peer"
    a = make_a(retry_schedule="1s", delay_warning="2s", max_queue_time="1h")
    rcpt = "slow@" + dom
    qid, token, msg = send(a, [rcpt], "delayed")
    stored = wait_mail(a, ALICE, token, "multipart/report", timeout=WAIT)[0]
    assert return_path(stored) == "<>"
    raw, rep = bounce_for(a, token)
    g = rep.rcpt(rcpt)
    check_group(g, "delayed", 4, diagnostic="still busy")
    # still queued and still being retried, and only one notice
    e = envelope(a, qid)
    assert e is not None and e[1][0]["state"] == "pending", queue_state(a)
    assert e[0].get("warned", "0") != "0", e
    n = len(peer.transactions)
    assert stays(lambda: len(find(a, ALICE, token)) == 1, 3), "more than one delay notice"
    assert len(peer.transactions) > n, "no more attempts after the delay notice: %s" % peer.summary()
    # when the peer gives in, the message is delivered
    del peer.always["rcpt"]
    wait_delivered(peer, rcpt, a=a)
    wait_queue_empty(a)


def test_null_mx_bounces_at_once(env, make_a):
    a = make_a(retry_schedule="1h")
    rcpt = "anyone@nullmx.test"
    qid, token, _ = send(a, [rcpt], "null mx")
    raw, rep = bounce_for(a, token, timeout=15)
    g = rep.rcpt(rcpt)
    check_group(g, "failed", 5)
    text = (g.get("diagnostic-code", "") + " " + rep.human.decode(errors="replace")).lower()
    assert g["status"] == "5.1.10" or "null mx" in text, \
        "the reason (RFC 7505 null MX) is not given: %r\n%s" % (g, text)
    wait_queue_empty(a)


def test_nxdomain_bounces(env, make_a):
    a = make_a(retry_schedule="1h")
    rcpt = "anyone@nowhere.test"
    qid, token, _ = send(a, [rcpt], "no such domain")
    raw, rep = bounce_for(a, token, timeout=15)
    g = rep.rcpt(rcpt)
    check_group(g, "failed", 5)
    text = (str(g) + " " + rep.human.decode(errors="replace")).lower()
    assert "nowhere.test" in text, "the bounce does not name the domain: %r" % text
    wait_queue_empty(a)


def test_servfail_is_temporary(env, make_a):
    a = make_a(retry_schedule="1s")
    rcpt = "anyone@servfail.test"
    qid, token, _ = send(a, [rcpt], "dns trouble")
    e = wait_until(lambda: (lambda e: e if e and int(e[1][0].get("attempts", 0)) >= 2 else None)(
        envelope(a, qid)), WAIT, 0.3, lambda: "two attempts recorded: %s\n%s" % (
        queue_state(a), a.log_text()[-2000:]))
    assert e[1][0]["state"] == "pending" and e[1][0].get("last_error"), e
    assert not find(a, ALICE, token), "SERVFAIL must not bounce"


# ---------------------------------------------------------------- no notices to the null sender, DSN NOTIFY

def test_null_sender_failure_sends_no_bounce(env, make_a):
    """A bounce arriving from elsewhere (MAIL FROM:<>) for an alias that
    forwards to another domain fails there: nothing goes back to anybody."""
    peer, dom = env.peer()
    peer.always["rcpt"] = "550 5.1.1 no such user"
    a = make_a(retry_schedule="1h")
    fwd = "fwd@" + A_DOMAIN
    a.alias_add(fwd, "far@" + dom)
    files = mail_files(a)
    msg, token = message("MAILER-DAEMON@c.test", fwd, "a bounce to forward")
    with Smtp(env.port, host="127.0.0.1") as c:
        assert c.greeting.code == 220, c.greeting
        assert c.ehlo("mx.c.test").code == 250
        r = c.send_mail("", [fwd], msg)
        assert r.code == 250, "%r\n%s" % (r, c.transcript())
        c.quit()
    wait_until(lambda: peer.transactions, WAIT, 0.2, lambda: "the forward attempt; %s; %s" % (
        peer.summary(), queue_state(a)))
    assert peer.transactions[0]["mail"] == "", "the null sender is kept: %s" % peer.summary()
    wait_queue_empty(a)
    assert stays(lambda: mail_files(a) == files and queue_empty(a), 3), \
        "something was sent about a failed null-sender message: %r %s" % (
            sorted(set(mail_files(a)) - set(files)), queue_state(a))
    assert len(peer.transactions) == 1, "a notice went out to the peer: %s" % peer.summary()


def test_notify_never_sends_no_bounce(env, make_a):
    peer, dom = env.peer()
    peer.always["rcpt"] = "550 5.1.1 no such user"
    a = make_a(retry_schedule="1h")
    rcpt = "quiet@" + dom
    qid, token, _ = send(a, [rcpt], "notify never", rcpt_params={rcpt: "NOTIFY=NEVER"})
    wait_until(lambda: peer.transactions, WAIT, 0.2, peer.summary)
    wait_queue_empty(a)
    assert no_report(a, token, 3), "a bounce despite NOTIFY=NEVER"


def test_notify_success_gets_a_relayed_report_from_a_peer_without_dsn(env, make_a):
    peer, dom = env.peer()          # no DSN in its EHLO
    a = make_a()
    rcpt = "happy@" + dom
    qid, token, _ = send(a, [rcpt], "notify success", rcpt_params={rcpt: "NOTIFY=SUCCESS"})
    d = wait_delivered(peer, rcpt, a=a)
    assert "NOTIFY" not in d[0]["rcpts"][0][1].upper(), \
        "DSN parameters sent to a peer that does not offer DSN: %r" % d[0]["rcpts"]
    raw, rep = bounce_for(a, token)
    g = rep.rcpt(rcpt)
    check_group(g, "relayed", 2)
    wait_queue_empty(a)


def test_dsn_parameters_are_passed_on_when_offered(env, make_a):
    peer, dom = env.peer(ext=("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "DSN"))
    a = make_a()
    rcpt = "dsn@" + dom
    qid, token, _ = send(a, [rcpt], "dsn passed on", mail_params="RET=HDRS ENVID=QQ314159",
                         rcpt_params={rcpt: "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;dsn@" + dom})
    d = wait_delivered(peer, rcpt, a=a)[0]
    mp = d["mail_params"].upper()
    assert "RET=HDRS" in mp and "ENVID=QQ314159" in mp, d["mail_params"]
    rp = d["rcpts"][0][1]
    assert re.search(r"(?i)NOTIFY=(SUCCESS,FAILURE|FAILURE,SUCCESS)\b", rp), rp
    assert re.search(r"(?i)ORCPT=rfc822;dsn@" + re.escape(dom), rp), rp
    wait_queue_empty(a)
    # the next hop supports DSN: it, not A, reports the success; A's
    # "relayed" report is only for a next hop without DSN (RFC 3461
    # 5.2.1, 5.2.2)
    assert no_report(a, token, 3), "A sent a report although the peer took over DSN: %r" % (
        [Report(m) for m in find(a, ALICE, token)],)


def test_notify_success_end_to_end(env, make_a):
    """alice -> bob@b.test with NOTIFY=SUCCESS: a success report reaches
    alice (from B, 'delivered', sent back through a.test's MX = A, or from A,
    'relayed')."""
    a = make_a()
    bob = env.bob[0]
    qid, token, _ = send(a, [bob], "success report", rcpt_params={bob: "NOTIFY=SUCCESS"})
    wait_mail(env.b, bob, token)
    raw, rep = bounce_for(a, token, timeout=25)
    g = rep.rcpt(bob)
    assert g.get("action", "").lower() in ("delivered", "relayed"), g
    check_group(g, g["action"].lower(), 2)


def test_smtputf8_message_to_a_peer_without_smtputf8_bounces(env, make_a):
    peer, dom = env.peer()          # no SMTPUTF8
    a = make_a(retry_schedule="1h")
    rcpt = "j\u00fcrgen@" + dom
    msg, token = message(ALICE, rcpt, "utf8 \u00e4\u00f6\u00fc")
    r = submit(a, a.alice[0], a.alice[1], [rcpt], msg, mail_params="SMTPUTF8")
    raw, rep = bounce_for(a, token)
    assert rep.report_type == "global-delivery-status", \
        "a notice about an SMTPUTF8 message is an RFC 6533 one: %r" % rep.report_type
    assert len(rep.rcpts) == 1, rep
    check_group(rep.rcpts[0], "failed", 5)
    text = (str(rep.rcpts[0]) + rep.human.decode(errors="replace")).lower()
    assert "smtputf8" in text or "5.6.7" in text, "no clear reason: %r" % text
    assert not peer.deliveries, peer.summary()
    wait_queue_empty(a)
    assert r


# ---------------------------------------------------------------- misbehaving peers

@pytest.mark.parametrize("stage,spec", [
    ("greeting", "garbage"),
    ("ehlo", "many"),
    ("data", "close"),
    ("dataend", "close"),
    ("rcpt", "garbage"),
])
def test_misbehaving_peer_is_retried_and_the_message_arrives_once(env, make_a, stage, spec):
    peer, dom = env.peer()
    peer.once[stage] = [spec]
    a = make_a(retry_schedule="1s")
    rcpt = "odd@" + dom
    qid, token, msg = send(a, [rcpt], "peer %s %s" % (stage, spec))
    wait_delivered(peer, rcpt, a=a)
    wait_queue_empty(a)
    assert stays(lambda: len(peer.delivered_to(rcpt)) == 1, 2), peer.summary()
    assert peer.delivered_to(rcpt)[0]["data"].endswith(msg)
    if spec != "many":      # a 10,000-line EHLO reply may also be taken as it is
        assert peer.connections >= 2, "delivered without a retry: %s" % peer.summary()
    assert no_report(a, token, 0.5)
    a.assert_alive()


# ---------------------------------------------------------------- routing

def test_a_domain_without_mx_gets_mail_at_its_a_record(env, make_a):
    peer = env.peer_at(ROUTE_ADDRS["nomx"])
    a = make_a()
    rcpt = "someone@nomx.test"
    qid, token, msg = send(a, [rcpt], "no mx")
    wait_delivered(peer, rcpt, a=a)
    wait_queue_empty(a)


def test_mx_preferences_are_tried_in_order(env, make_a):
    """prio.test: MX 5 refuses connections, MX 10 and MX 20 are peers. The
    message goes to MX 10, never to 20; once MX 10 is gone too, to MX 20."""
    p10 = env.peer_at(ROUTE_ADDRS["mx10"])
    p20 = env.peer_at(ROUTE_ADDRS["mx20"])
    a = make_a()
    rcpt = "someone@prio.test"
    send(a, [rcpt], "preference 10")
    wait_delivered(p10, rcpt, a=a)
    wait_queue_empty(a)
    assert p20.connections == 0, "MX 20 was tried while MX 10 worked: %s" % p20.summary()
    p10.close()
    send(a, [rcpt], "preference 20")
    wait_delivered(p20, rcpt, a=a)
    wait_queue_empty(a)


def test_an_ipv6_mx_host(env, make_a):
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback (::1) on this machine")
    peer = env.peer_at("::1")
    a = make_a()
    rcpt = "someone@v6.test"
    qid, token, msg = send(a, [rcpt], "over ipv6")
    d = wait_delivered(peer, rcpt, a=a)
    assert d[0]["data"].endswith(msg)
    wait_queue_empty(a)


def test_each_attempt_is_logged(env, make_a):
    """One logfmt line per attempt: queue id, recipient, relay host and
    address, TLS, code, status, result and the reply text (issue 5)."""
    peer, dom = env.peer()
    peer.once["rcpt"] = ["451 4.3.0 LOGME-try-later"]
    a = make_a()
    far, bob = "logged@" + dom, env.bob[0]
    qid, token, msg = send(a, [far, bob], "logged")
    wait_delivered(peer, far, a=a)
    wait_mail(env.b, bob, token)
    wait_queue_empty(a)
    lines = [l for l in a.log_text().splitlines() if "event=delivery" in l and "id=" + qid in l]
    peer_ip = re.escape(peer.host)

    def one(*patterns):
        got = [l for l in lines if all(re.search(p, l) for p in patterns)]
        assert got, "no delivery log line with %r in:\n%s" % (patterns, "\n".join(lines))
        return got[0]
    one(r"rcpt=<%s>" % re.escape(far), r"relay=mx\.%s\[%s\]" % (re.escape(dom), peer_ip),
        r"\bcode=451\b", r"\bstatus=4\.3\.0\b", r"\bresult=deferred\b", "LOGME-try-later")
    one(r"rcpt=<%s>" % re.escape(far), r"\bcode=250\b", r"\bresult=sent\b")
    to_b = one(r"rcpt=<%s>" % re.escape(bob), r"relay=mx\.b\.test\[127\.0\.0\.2\]",
               r"\bcode=250\b", r"\bstatus=2\.\d+\.\d+\b", r"\bresult=sent\b")
    assert len(lines) == 3, "one line per attempt and recipient:\n%s" % "\n".join(lines)
    assert re.search(r"\btls=\S*TLS", to_b), \
        "the delivery to B (STARTTLS) does not log its TLS: %r" % to_b
    assert all(re.search(r"\btls=", l) for l in lines), "a line without tls=:\n%s" % "\n".join(lines)
    # a quoted logfmt value keeps its spaces (as in event=tls lines)
    assert 'reply="' in lines[0] and "451 4.3.0 LOGME-try-later" in "\n".join(lines), \
        "the reply text is not logged as the peer sent it:\n%s" % "\n".join(lines)


# ---------------------------------------------------------------- restarts

def test_a_restart_picks_up_the_queue(env, make_a):
    """The runner scans the queue at start: a message whose attempt failed
    (retry in an hour), flushed with `pobox queue flush` while A is down, is
    delivered as soon as A is back."""
    peer, dom = env.peer()
    peer.always["greeting"] = "421 4.3.2 not today"
    a = make_a(retry_schedule="1h")
    rcpt = "restart@" + dom
    qid, token, msg = send(a, [rcpt], "across a restart")
    wait_until(lambda: (lambda e: e and int(e[1][0]["attempts"]) >= 1)(envelope(a, qid)),
               WAIT, 0.2, lambda: "the first attempt: %s" % queue_state(a))
    assert a.stop() == 0
    del peer.always["greeting"]
    r = a.cli("queue", "flush")
    assert r.returncode == 0, r
    a.start(new_ports=False)
    wait_delivered(peer, rcpt, a=a)
    wait_queue_empty(a)
    assert len(peer.deliveries) == 1


def test_sigterm_during_a_stalled_delivery(env, make_a):
    """SIGTERM while a peer stalls in DATA: pobox exits 0 in time, keeps the
    message, and delivers it once after the restart."""
    peer, dom = env.peer()
    peer.stall_data_after = 65536
    a = make_a(retry_schedule="1s")
    rcpt = "term@" + dom
    body = b"".join(b"line %06d of a long message, long enough to fill the buffers\r\n" % i
                    for i in range(6000))
    qid, token, msg = send(a, [rcpt], "sigterm mid-data", body=body)
    assert peer.stalled.wait(WAIT), peer.summary()
    t0 = time.monotonic()
    rc = a.stop(timeout=15)
    assert rc == 0, "pobox serve did not exit 0 within 15 s of SIGTERM (rc %r)" % rc
    took = time.monotonic() - t0
    peer.release()
    assert (a.queue_dir / "env" / qid).exists(), "the message is gone: %s" % queue_state(a)
    a.start(new_ports=False)
    wait_delivered(peer, rcpt, a=a)
    wait_queue_empty(a)
    assert stays(lambda: len(peer.delivered_to(rcpt)) == 1, 2), peer.summary()
    assert took < 15


# ---------------------------------------------------------------- crash during delivery

def test_kill9_during_data_then_restart_delivers_exactly_once(env, make_a):
    peer, dom = env.peer()
    peer.stall_data_after = 65536
    a = make_a(retry_schedule="1s")
    rcpt = "crash@" + dom
    body = b"".join(b"line %06d of a long message, long enough to fill the buffers\r\n" % i
                    for i in range(6000))
    qid, token, msg = send(a, [rcpt], "kill -9 mid-data", body=body)
    assert peer.stalled.wait(WAIT), "the delivery never reached DATA: %s\n%s" % (
        peer.summary(), a.log_text()[-2000:])
    a.kill9()
    peer.release()
    assert (a.queue_dir / "env" / qid).exists(), "the entry is gone after kill -9: %s" % queue_state(a)
    a.start(new_ports=False)
    wait_delivered(peer, rcpt, a=a)
    wait_queue_empty(a)
    assert stays(lambda: len(peer.delivered_to(rcpt)) == 1, 4), \
        "delivered more than once after the restart: %s" % peer.summary()
    assert peer.delivered_to(rcpt)[0]["data"].endswith(msg), "the message arrived damaged"
    assert no_report(a, token, 0.5)


# ---------------------------------------------------------------- mail loops

def test_too_many_received_lines_bounce_as_a_loop(env, make_a):
    a = make_a(max_hops="5")
    bob = env.bob[0]
    hops = b"".join(b"Received: from hop%d.c.test by hop%d.c.test with ESMTP id H%d;"
                    b" Mon, 02 Jan 2023 10:00:0%d +0000\r\n" % (i, i + 1, i, i) for i in range(6))
    msg, token = message(ALICE, bob, "looping", extra=b"")
    msg = hops + msg
    with a.smtp_session("submission", user=a.alice[0], password=a.alice[1]) as c:
        r = c.send_mail(ALICE, [bob], msg)
        c.quit()
    if r.code != 250:
        # refused at once (RFC 5321 6.3 allows either): the reply says why
        assert r.code == 554 and re.search(rb"(?i)loop|hop", b" ".join(r.lines)), r
        return
    raw, rep = bounce_for(a, token)
    g = rep.rcpt(bob)
    check_group(g, "failed", 5)
    text = (str(g) + rep.human.decode(errors="replace")).lower()
    assert "loop" in text or "hop" in text, "no loop diagnostic: %r" % text
    assert not find(env.b, bob, token), "the looping message was delivered"
    wait_queue_empty(a)


def test_alias_ping_pong_is_stopped_by_max_hops(env, make_a):
    """loop@b.test forwards to loop@a.test, which forwards back: A (with
    relay.max_hops = 8) bounces the message to alice once it has gone round
    too often."""
    a = make_a(max_hops="8")
    tag = os.urandom(3).hex()
    at_b, at_a = "loop%s@b.test" % tag, "loop%s@a.test" % tag
    env.b.alias_add(at_b, at_a)
    a.alias_add(at_a, at_b)
    qid, token, _ = send(a, [at_b], "ping pong")
    raw, rep = bounce_for(a, token, timeout=25)
    assert len(rep.rcpts) == 1, rep
    check_group(rep.rcpts[0], "failed", 5)
    text = (str(rep.rcpts[0]) + rep.human.decode(errors="replace")).lower()
    assert "loop" in text or "hop" in text, "no loop diagnostic: %r" % text
    assert len(received_lines(rep.returned)) > 8, received_lines(rep.returned)
    wait_until(lambda: queue_empty(a) and queue_empty(env.b), 10, 0.3,
               lambda: "both queues empty: A %s, B %s" % (queue_state(a), queue_state(env.b)))


# ---------------------------------------------------------------- smarthost

def test_smarthost_with_auth_over_starttls(env, make_a, tmp_path):
    """A b.test instance (B2, its submission port on 127.0.0.2:Q) is A's
    smarthost: A logs in there after STARTTLS with relay.smarthost_user /
    relay.smarthost_password_file; bob gets the message. B2's relay account
    is named alice@a.test, so that B2's sender rule (an authenticated user
    sends only as themself) lets the mail through. (B2, not the module's B:
    a user alice@a.test on B could catch the notices B sends to alice.)"""
    q = free_port(B_ADDR)
    b2 = env.make_server("b2", B_DOMAIN, B_HOST, "127.0.0.1:%d" % free_port(),
                         config={"listen": {"submission": "%s:%d" % (B_ADDR, q)}})
    try:
        bob, bob_pw = b2.add_user("bob@" + B_DOMAIN)
        pw = "Smart-%s" % os.urandom(6).hex()
        b2.add_user(ALICE, pw)
        pwfile = tmp_path / "smarthost.pw"
        pwfile.write_text(pw + "\n")
        os.chmod(pwfile, 0o600)
        a = make_a(smarthost="%s:%d" % (B_ADDR, q), smarthost_user=ALICE,
                   smarthost_password_file=str(pwfile), smarthost_tls="starttls",
                   resolver="127.0.0.1:9")          # no MX lookups happen
        a.passwords.add(pw)
        qid, token, msg = send(a, [bob], "via the smarthost")
        wait_mail(b2, bob, token, extra="\n--- A log tail:\n" + a.log_text()[-2500:])
        m = pop3_find(b2, bob, bob_pw, token)
        assert len(m) == 1
        rec = received_lines(m[0])
        assert re.search(rb"\bby mx\.b\.test\b.*\bwith ESMTPSA\b", rec[0]), \
            "B2's Received: shows an authenticated TLS submission: %r" % rec[0]
        assert re.search(rb"\bby mx\.a\.test\b", rec[1]), rec
        wait_queue_empty(a)
    finally:
        problems = env.stop_server(b2)
        env.servers.remove(b2)
    assert not problems, problems


class PeerProcess:
    """tests/smtp_peer.py as a child process; .port, .record (its lines)."""

    def __init__(self, folder, *options):
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.portfile = self.dir / "port"
        self.recfile = self.dir / "record"
        self.proc = subprocess.Popen(
            [PYTHON, str(TESTS / "smtp_peer.py"), str(self.portfile),
             "record=%s" % self.recfile] + list(options),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "stderr", "wb"))
        wait_until(lambda: self.portfile.exists() or self.proc.poll() is not None, 15, 0.1,
                   "smtp_peer.py to start")
        assert self.proc.poll() is None, (self.dir / "stderr").read_text(errors="replace")
        self.port = int(self.portfile.read_text())

    def record(self):
        try:
            return self.recfile.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def smtp_peer(tmp_path):
    made = []

    def make(*options):
        p = PeerProcess(tmp_path / ("peer%d" % len(made)), *options)
        made.append(p)
        return p
    yield make
    for p in made:
        p.stop()


def test_smarthost_credentials_only_after_starttls(env, make_a, smtp_peer, tmp_path):
    pwfile = tmp_path / "pw"
    pwfile.write_text("s3cret-smart\n")
    peer = smtp_peer("ext=starttls,auth,pipelining,8bitmime", "user=relayuser", "pass=s3cret-smart")
    a = make_a(smarthost="127.0.0.1:%d" % peer.port, smarthost_user="relayuser",
               smarthost_password_file=str(pwfile), smarthost_tls="starttls")
    a.passwords.add("s3cret-smart")
    qid, token, msg = send(a, ["someone@far.test"], "smarthost peer")
    wait_until(lambda: any(l.startswith("# data") for l in peer.record()), WAIT, 0.2,
               lambda: "the message at the smarthost: %r\n%s" % (peer.record(), a.log_text()[-2000:]))
    rec = peer.record()
    tls = rec.index("# tls")
    auth = [i for i, l in enumerate(rec) if l.startswith("# auth ")]
    assert auth and auth[0] > tls, "AUTH before TLS: %r" % rec
    assert rec[auth[0]].split()[3:5] == ["relayuser", "s3cret-smart"], rec[auth[0]]
    assert not any(l.startswith("C: AUTH") for l in rec[:tls]), rec
    assert any(re.match(r"C: MAIL FROM:<alice@a\.test>", l) for l in rec), rec
    assert any(re.match(r"C: RCPT TO:<someone@far\.test>", l) for l in rec), rec
    data = (peer.recfile.parent / "record.data").read_bytes()
    assert data.endswith(msg), data[-500:]
    wait_queue_empty(a)


def test_smarthost_without_starttls_gets_nothing(env, make_a, smtp_peer, tmp_path):
    """relay.smarthost_tls = starttls is required TLS: a smarthost that does
    not offer STARTTLS gets neither the password nor the message; the
    message waits in the queue with the reason."""
    pwfile = tmp_path / "pw"
    pwfile.write_text("never-in-clear\n")
    peer = smtp_peer("ext=auth,pipelining")
    a = make_a(smarthost="127.0.0.1:%d" % peer.port, smarthost_user="relayuser",
               smarthost_password_file=str(pwfile), smarthost_tls="starttls")
    a.passwords.add("never-in-clear")
    qid, token, msg = send(a, ["someone@far.test"], "no tls no mail")
    e = wait_until(lambda: (lambda e: e if e and e[1][0].get("last_error") else None)(
        envelope(a, qid)), WAIT, 0.3, lambda: "a recorded failure: %s; peer %r" % (
        queue_state(a), peer.record()))
    assert e[1][0]["state"] == "pending", e
    assert re.search(r"(?i)tls", e[1][0]["last_error"]), e
    rec = peer.record()
    assert not any(l.startswith("# auth") or l.startswith("C: AUTH") or l.startswith("C: MAIL")
                   for l in rec), rec
    assert not find(a, ALICE, token)
