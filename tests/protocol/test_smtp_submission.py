"""test_smtp_submission.py — message submission (RFC 6409) on 587 with
STARTTLS and 465 with implicit TLS (RFC 8314), and authenticated relaying on
25 (SPEC section 5, docs/smtp.md): AUTH before MAIL (530 5.7.0), the sender
address and the From: header must be the user's own (553 5.7.1), Message-ID
and Date added only when missing, the Received: line (RFC 3848 ESMTPSA, TLS
version and cipher, no password, no client address with
smtp.hide_client_ip), remote recipients queued before the 250, DSN
parameters (RFC 3461), and a kill -9 right after the 250."""

import email.utils
import os
import re
import time

import pytest

from pobox_harness import (DEAD_SMARTHOST, DOMAIN, assert_queued, check_trace, lf,
                           remove_fields, smtp_message, split_trace)

SERVER_CONFIG = {"auth": {"plaintext_without_tls": "no", "failure_delay": "0"},
                 "relay": {"smarthost": DEAD_SMARTHOST}}

MAIL_OK = (250, [b"2.1.0 Ok"])
RCPT_OK = (250, [b"2.1.5 Ok"])
AUTH_REQUIRED = (530, [b"5.7.0 Authentication required"])


def rnd():
    return os.urandom(3).hex()


def not_owned(addr, user):
    return (553, [b"5.7.1 <%s>: sender address not owned by %s" % (addr.encode(), user.encode())])


def from_not_owned(user):
    return (553, [b"5.7.1 From: header address not owned by " + user.encode()])


@pytest.fixture(scope="module")
def alice(server):
    """alice, with an alias of her own and an alias shared with bob."""
    user, pw = server.add_user()
    return user, pw


@pytest.fixture(scope="module")
def bob(server):
    return server.add_user()


@pytest.fixture(scope="module")
def aliases(server, alice, bob):
    own = "alice-alias-%s@%s" % (rnd(), DOMAIN)
    shared = "shared-%s@%s" % (rnd(), DOMAIN)
    bobs = "bob-alias-%s@%s" % (rnd(), DOMAIN)
    server.alias_add(own, alice[0])
    server.alias_add(shared, alice[0], bob[0])
    server.alias_add(bobs, bob[0])
    return {"own": own, "shared": shared, "bob": bobs}


LISTENERS = ["submission", "submissions"]


def session(server, listener, user):
    return server.smtp_session(listener, user[0], user[1])


def own_message(user, subject="submitted", **kw):
    return smtp_message(subject, sender=user, **kw)


# ---------------------------------------------------------------- AUTH required

@pytest.mark.parametrize("listener", LISTENERS)
def test_mail_before_auth_is_refused(server, listener, alice):
    with server.smtp_session(listener) as c:
        assert c.mail(alice[0]) == AUTH_REQUIRED, c.transcript()
        assert c.rcpt("someone@other.org").code == 503, c.transcript()
        assert c.cmd("DATA").code == 503, c.transcript()
        c.quit()


def test_mail_before_starttls_and_auth_is_refused(server, alice):
    with server.smtp_session("submission", starttls=False) as c:
        assert c.mail(alice[0]) == AUTH_REQUIRED, c.transcript()
        c.quit()


def test_failed_auth_does_not_open_submission(server, alice):
    with server.smtp_session("submission") as c:
        r = c.auth_plain(alice[0], server.secret())
        assert r == (535, [b"5.7.8 Authentication credentials invalid"]), c.transcript()
        assert c.mail(alice[0]) == AUTH_REQUIRED, c.transcript()
        c.quit()


# ---------------------------------------------------------------- delivery, Received

@pytest.mark.parametrize("listener", LISTENERS)
def test_submission_to_a_local_user(server, listener, alice, bob):
    msg = own_message(alice[0], body=b"Hi Bob,\r\n.\r\n..\r\nbye\r\n")
    before = len(server.delivered(bob[0]))
    with session(server, listener, alice) as c:
        version, cipher = c.sock.version(), c.sock.cipher()[0]
        assert_queued(c.send_mail(alice[0], [bob[0]], msg), c)
        c.quit()
    got = server.delivered(bob[0])
    assert len(got) == before + 1
    # Message-ID and Date were there: nothing but the trace fields is added
    line = check_trace(got[-1], msg, alice[0], [bob[0]], "ESMTPSA", helo="client.example.net")
    assert cipher.encode() in line, "Received: does not name the cipher %s: %r" % (cipher, line)
    v = re.escape(version.replace("TLSv", "")).encode()
    assert re.search(rb"TLS[ v]?" + v + rb"\b", line.replace(b"_", b".")), \
        "Received: does not name %s: %r" % (version, line)
    assert alice[1].encode() not in got[-1], "the password is in the delivered message"


def test_smtplib_sendmail_over_587_and_465(server, alice, bob):
    before = len(server.delivered(bob[0]))
    msgs = []
    for listener in LISTENERS:
        msg = own_message(alice[0], "smtplib " + listener)
        msgs.append(msg)
        s = server.smtplib(listener, login=alice)
        try:
            refused = s.sendmail(alice[0], [bob[0]], msg)
            assert refused == {}
        finally:
            s.quit()
    got = server.delivered(bob[0])
    assert len(got) == before + 2
    for m, stored in zip(msgs, got[-2:]):
        check_trace(stored, m, alice[0], [bob[0]], "ESMTPSA")


def test_unknown_local_recipient(server, alice):
    addr = "nobody-%s@%s" % (rnd(), DOMAIN)
    with session(server, "submission", alice) as c:
        assert c.mail(alice[0]) == MAIL_OK
        assert c.rcpt(addr) == (550, [b"5.1.1 <%s>: Recipient address rejected: User unknown"
                                      % addr.encode()]), c.transcript()
        c.quit()


@pytest.fixture(scope="module")
def hidden(server_factory):
    return server_factory({"auth": {"plaintext_without_tls": "no", "failure_delay": "0"},
                           "smtp": {"hide_client_ip": "yes"},
                           "relay": {"smarthost": DEAD_SMARTHOST}})


@pytest.mark.parametrize("listener", LISTENERS)
def test_hide_client_ip(hidden, listener):
    alice, bob = hidden.add_user(), hidden.add_user()
    msg = own_message(alice[0], "hidden ip")
    with session(hidden, listener, alice) as c:
        assert_queued(c.send_mail(alice[0], [bob[0]], msg), c)
        c.quit()
    got = hidden.delivered(bob[0])
    assert len(got) == 1
    check_trace(got[0], msg, alice[0], [bob[0]], "ESMTPSA", client_ip=None)


def test_client_ip_shown_by_default(server, alice, bob):
    msg = own_message(alice[0], "ip shown")
    before = len(server.delivered(bob[0]))
    with session(server, "submission", alice) as c:
        assert_queued(c.send_mail(alice[0], [bob[0]], msg), c)
        c.quit()
    check_trace(server.delivered(bob[0])[before], msg, alice[0], [bob[0]], "ESMTPSA",
                client_ip="127.0.0.1")


# ---------------------------------------------------------------- Message-ID and Date

MSGID_RE = re.compile(rb"^Message-ID:[ \t]*<[^<>@\s]+@[^<>@\s]+>\n$", re.I)


def added_fields(stored, original, names=("message-id", "date")):
    """Removes the header fields pobox added (names) from the stored file,
    checks that the rest is the original under trace fields; returns
    {name: [raw]} of what was removed."""
    removed, rest = remove_fields(stored, set(names))
    orig_removed, _ = remove_fields(lf(original), set(names))
    for name in names:
        have = len(orig_removed.get(name, []))
        got = len(removed.get(name, []))
        assert got == (have or 1), "%s: %d in the original, %d stored" % (name, have, got)
    _, orig_rest = remove_fields(lf(original), set(names))
    split_trace(rest, orig_rest)
    return removed


def submit(server, alice, bob, msg):
    before = len(server.delivered(bob[0]))
    with session(server, "submission", alice) as c:
        assert_queued(c.send_mail(alice[0], [bob[0]], msg), c)
        c.quit()
    got = server.delivered(bob[0])
    assert len(got) == before + 1
    return got[-1]


def check_date(field):
    value = field.split(b":", 1)[1].strip().decode()
    when = email.utils.parsedate_to_datetime(value)
    assert when.tzinfo is not None, field
    assert abs(time.time() - when.timestamp()) < 600, field


def test_message_id_and_date_added_when_missing(server, alice, bob):
    msg = own_message(alice[0], "no id, no date", message_id=False, date=False)
    ids = []
    for _ in range(2):
        stored = submit(server, alice, bob, msg)
        added = added_fields(stored, msg)
        assert MSGID_RE.match(added["message-id"][0]), added
        check_date(added["date"][0])
        ids.append(added["message-id"][0])
    assert ids[0] != ids[1], "the same Message-ID twice: %r" % ids


def test_only_the_missing_date_is_added(server, alice, bob):
    msg = own_message(alice[0], "no date", date=False)
    stored = submit(server, alice, bob, msg)
    added = added_fields(stored, msg)
    check_date(added["date"][0])
    assert added["message-id"] == [re.search(rb"(?m)^Message-ID:.*\n", lf(msg)).group(0)]


def test_only_the_missing_message_id_is_added(server, alice, bob):
    msg = own_message(alice[0], "no message-id", message_id=False)
    stored = submit(server, alice, bob, msg)
    added = added_fields(stored, msg)
    assert MSGID_RE.match(added["message-id"][0]), added
    assert added["date"] == [b"Date: Mon, 02 Jan 2023 10:00:00 +0000\n"]


def test_present_fields_in_any_case_are_kept(server, alice, bob):
    """Header names are case-insensitive: 'message-id:' and 'DATE:' count."""
    msg = (b"From: " + alice[0].encode() + b"\r\nTo: " + bob[0].encode() + b"\r\n"
           b"message-id: <lower-%s@example.org>\r\nDATE: Tue, 03 Jan 2023 11:00:00 +0100\r\n"
           b"Subject: odd case\r\n\r\nbody\r\n" % rnd().encode())
    stored = submit(server, alice, bob, msg)
    check_trace(stored, msg, alice[0], [bob[0]], "ESMTPSA")


def test_message_id_not_taken_from_the_body(server, alice, bob):
    msg = (b"From: " + alice[0].encode() + b"\r\nSubject: id in the body\r\n\r\n"
           b"Message-ID: <not-a-header@example.org>\r\nDate: not a header either\r\n")
    stored = submit(server, alice, bob, msg)
    removed, rest = remove_fields(stored, {"message-id", "date"})
    assert len(removed.get("message-id", [])) == 1 and len(removed.get("date", [])) == 1, removed
    assert b"not-a-header" not in b"".join(removed["message-id"])
    split_trace(rest, msg)


def test_header_only_message_gets_id_and_date(server, alice, bob):
    """A message of header fields only, without the empty line."""
    msg = b"From: " + alice[0].encode() + b"\r\nSubject: no body at all\r\n"
    stored = submit(server, alice, bob, msg)
    added = added_fields(stored, msg)
    assert MSGID_RE.match(added["message-id"][0]), added
    check_date(added["date"][0])


# ---------------------------------------------------------------- sender ownership

@pytest.mark.parametrize("listener", LISTENERS)
def test_mail_from_another_user_is_refused(server, listener, alice, bob):
    with session(server, listener, alice) as c:
        assert c.mail(bob[0]) == not_owned(bob[0], alice[0]), c.transcript()
        for addr in ("someone@other.org", "postmaster@" + DOMAIN, "nobody-%s@%s" % (rnd(), DOMAIN)):
            assert c.mail(addr) == not_owned(addr, alice[0]), c.transcript()
        # the session goes on: the own address works
        assert c.mail(alice[0]) == MAIL_OK, c.transcript()
        c.quit()


def test_mail_from_own_alias(server, alice, bob, aliases):
    msg = own_message(aliases["own"], "from my alias")
    before = len(server.delivered(bob[0]))
    with session(server, "submission", alice) as c:
        assert c.mail(aliases["own"]) == MAIL_OK, c.transcript()
        assert c.rcpt(bob[0]) == RCPT_OK
        assert_queued(c.data(msg)[1], c)
        c.quit()
    check_trace(server.delivered(bob[0])[before], msg, aliases["own"], [bob[0]], "ESMTPSA")


def test_mail_from_alias_of_own_alias(server, alice, aliases):
    outer = "outer-%s@%s" % (rnd(), DOMAIN)
    server.alias_add(outer, aliases["own"])
    with session(server, "submission", alice) as c:
        assert c.mail(outer) == MAIL_OK, c.transcript()
        c.quit()


@pytest.mark.parametrize("which", ["shared", "bob"])
def test_mail_from_alias_not_only_mine_is_refused(server, alice, aliases, which):
    addr = aliases[which]
    with session(server, "submission", alice) as c:
        assert c.mail(addr) == not_owned(addr, alice[0]), c.transcript()
        c.quit()


def test_mail_from_with_other_domain_case(server, alice):
    local, domain = alice[0].split("@")
    with session(server, "submission", alice) as c:
        assert c.mail(local + "@" + domain.upper()) == MAIL_OK, c.transcript()
        c.quit()


@pytest.mark.parametrize("from_", [
    "%(bob)s",
    "Bob <%(bob)s>",
    '"%(alice)s" <%(bob)s>',                   # display name that looks like her address
    "Alice <%(alice)s>, Bob <%(bob)s>",         # two authors, one not hers
    "Alice\r\n <%(bob)s>",                      # folded
    "someone@other.org",
    "%(shared)s",
    "<%(bob)s> (%(alice)s)",                    # her address in a comment
])
def test_from_header_not_owned(server, alice, bob, aliases, from_):
    value = from_ % {"alice": alice[0], "bob": bob[0], "shared": aliases["shared"]}
    msg = (b"From: " + value.encode() + b"\r\nTo: " + bob[0].encode() + b"\r\n"
           b"Subject: forged\r\nMessage-ID: <f-%s@example.org>\r\n"
           b"Date: Mon, 02 Jan 2023 10:00:00 +0000\r\n\r\nforged\r\n" % rnd().encode())
    before = len(server.delivered(bob[0]))
    with session(server, "submission", alice) as c:
        r = c.send_mail(alice[0], [bob[0]], msg)
        assert r == from_not_owned(alice[0]), "From: %s\n%s" % (value, c.transcript())
        # the session goes on
        assert c.mail(alice[0]) == MAIL_OK, c.transcript()
        c.quit()
    assert len(server.delivered(bob[0])) == before, "the forged message was delivered"


def test_two_from_fields_are_refused(server, alice, bob):
    msg = (b"From: " + alice[0].encode() + b"\r\nFrom: " + bob[0].encode() + b"\r\n"
           b"Subject: two From fields\r\n\r\nbody\r\n")
    before = len(server.delivered(bob[0]))
    with session(server, "submission", alice) as c:
        r = c.send_mail(alice[0], [bob[0]], msg)
        assert r.code in (550, 553, 554) and r.enhanced.startswith("5."), c.transcript()
        c.quit()
    assert len(server.delivered(bob[0])) == before


@pytest.mark.parametrize("from_", [
    "%(alice)s",
    "Alice Example <%(alice)s>",
    '"Example, Alice" <%(alice)s>',
    '"%(bob)s" <%(alice)s>',                    # the address is hers, whatever the name says
    "=?utf-8?q?Al=C3=AFce?= <%(alice)s>",
    "Alice\r\n <%(alice)s>",
    "%(own)s",
    "%(alice_upper)s",
])
def test_from_header_owned(server, alice, bob, aliases, from_):
    local, domain = alice[0].split("@")
    value = from_ % {"alice": alice[0], "bob": bob[0], "own": aliases["own"],
                     "alice_upper": local + "@" + domain.upper()}
    msg = (b"from: " + value.encode() + b"\r\nTo: " + bob[0].encode() + b"\r\n"
           b"Subject: mine\r\nMessage-ID: <o-%s@example.org>\r\n"
           b"Date: Mon, 02 Jan 2023 10:00:00 +0000\r\n\r\nmine\r\n" % rnd().encode())
    stored = submit(server, alice, bob, msg)
    check_trace(stored, msg, alice[0], [bob[0]], "ESMTPSA")


# ---------------------------------------------------------------- remote recipients: the queue

def env_text(server, before_names):
    new = [p for p in server.queue_files("env") if p.name not in before_names]
    assert len(new) == 1, "new envelope files: %r" % new
    return new[0].read_bytes()


@pytest.mark.parametrize("listener", LISTENERS)
def test_remote_recipient_is_queued_before_the_reply(server, listener, alice):
    rcpt = "carol-%s@other.org" % rnd()
    body_marker = ("queued body %s" % rnd()).encode()
    msg = own_message(alice[0], "to the world", body=body_marker + b"\r\n.dot\r\n")
    msg_before = {p.name for p in server.queue_files("msg")}
    env_before = {p.name for p in server.queue_files("env")}
    with session(server, listener, alice) as c:
        assert c.mail(alice[0]) == MAIL_OK
        assert c.rcpt(rcpt) == RCPT_OK, c.transcript()
        assert_queued(c.data(msg)[1], c)
        # checked while the session is still open: the files were there
        # when the 250 was sent
        new_msg = [p for p in server.queue_files("msg") if p.name not in msg_before]
        env = env_text(server, env_before)
        c.quit()
    assert len(new_msg) == 1, "new queue/msg files: %r" % new_msg
    content = new_msg[0].read_bytes()
    assert body_marker in content and b"Subject: to the world" in content, content[:2000]
    assert rcpt.encode() in env and alice[0].encode() in env, env


@pytest.fixture(scope="module")
def small(server_factory):
    return server_factory({"auth": {"plaintext_without_tls": "no", "failure_delay": "0"},
                           "limits": {"max_message_size": "10000"},
                           "relay": {"smarthost": DEAD_SMARTHOST}})


@pytest.mark.parametrize("what", ["bare-lf", "long-line", "too-big", "from-not-owned"])
def test_refused_message_is_not_queued(small, what):
    alice, bob = small.add_user(), small.add_user()
    body = {"bare-lf": b"bare\nLF\r\n", "long-line": b"L" * 2000 + b"\r\n",
            "too-big": (b"b" * 98 + b"\r\n") * 200, "from-not-owned": b"ok\r\n"}[what]
    msg = own_message(bob[0] if what == "from-not-owned" else alice[0], what, body=body)
    with session(small, "submission", alice) as c:
        assert c.mail(alice[0]) == MAIL_OK
        assert c.rcpt("remote-%s@other.org" % rnd()) == RCPT_OK
        assert c.rcpt(bob[0]) == RCPT_OK
        assert c.cmd("DATA").code == 354
        c.send(msg + b".\r\n" if what == "bare-lf" else
               re.sub(rb"(?m)^\.", b"..", msg) + b".\r\n")
        r = c.reply()
        assert r.code in (552, 553, 554) and r.enhanced.startswith("5."), c.transcript()
        c.quit()
    assert small.queue_count() == (0, 0), "a refused message was queued"
    assert small.delivered(bob[0]) == []


def test_local_and_remote_recipients_in_one_transaction(server, alice, bob):
    rcpt = "dave-%s@other.org" % rnd()
    msg = own_message(alice[0], "mixed recipients")
    before = len(server.delivered(bob[0]))
    env_before = {p.name for p in server.queue_files("env")}
    with session(server, "submission", alice) as c:
        assert_queued(c.send_mail(alice[0], [bob[0], rcpt], msg), c)
        c.quit()
    check_trace(server.delivered(bob[0])[before], msg, alice[0], [bob[0]], "ESMTPSA")
    env = env_text(server, env_before)
    assert rcpt.encode() in env
    assert bob[0].encode() not in env, "the local recipient was queued too: %r" % env


def test_auth_on_port_25_allows_relaying(server, alice):
    rcpt = "erin-%s@other.org" % rnd()
    env_before = {p.name for p in server.queue_files("env")}
    with server.smtp_session("smtp", alice[0], alice[1]) as c:
        assert c.mail(alice[0]) == MAIL_OK
        assert c.rcpt(rcpt) == RCPT_OK, c.transcript()
        assert_queued(c.data(own_message(alice[0], "relayed from 25"))[1], c)
        c.quit()
    assert rcpt.encode() in env_text(server, env_before)


def test_port_25_without_auth_still_refuses_relaying(server, alice):
    with server.smtp_session("smtp") as c:
        assert c.mail(alice[0]) == MAIL_OK
        assert c.rcpt("x@other.org") == (554, [b"5.7.1 <x@other.org>: Relay access denied"]), \
            c.transcript()
        c.quit()


# ---------------------------------------------------------------- DSN (RFC 3461)

def test_dsn_parameters_are_kept_in_the_queue(server, alice):
    envid = "QQ314159-%s" % rnd()
    rcpt = "frank-%s@other.org" % rnd()
    env_before = {p.name for p in server.queue_files("env")}
    with session(server, "submission", alice) as c:
        assert "DSN" in c.extensions()
        assert c.mail(alice[0], "RET=HDRS ENVID=" + envid) == MAIL_OK, c.transcript()
        assert c.rcpt(rcpt, "NOTIFY=SUCCESS,DELAY ORCPT=rfc822;" + rcpt) == RCPT_OK, \
            c.transcript()
        assert_queued(c.data(own_message(alice[0], "dsn"))[1], c)
        c.quit()
    env = env_text(server, env_before).lower()
    assert envid.lower().encode() in env, env
    assert env.count(rcpt.encode()) >= 2 or b"rfc822;" + rcpt.encode() in env, \
        "ORCPT not in the envelope: %r" % env
    assert b"hdrs" in env, "RET=HDRS not in the envelope: %r" % env
    assert b"success" in env and b"delay" in env, "NOTIFY not in the envelope: %r" % env


def test_dsn_xtext_and_never(server, alice):
    with session(server, "submission", alice) as c:
        assert c.mail(alice[0], "RET=FULL ENVID=a+2Bb+3Dc") == MAIL_OK, c.transcript()
        assert c.rcpt("g@other.org", "NOTIFY=NEVER") == RCPT_OK, c.transcript()
        assert c.rcpt("h@other.org", "ORCPT=rfc822;h+2Bx@other.org NOTIFY=FAILURE") == RCPT_OK, \
            c.transcript()
        assert c.rcpt("i@other.org", "notify=success,failure,delay") == RCPT_OK, c.transcript()
        c.quit()


@pytest.mark.parametrize("where,params", [
    ("mail", "RET=PARTIAL"),
    ("mail", "RET="),
    ("mail", "RET=FULL RET=FULL"),
    ("mail", "ENVID=a+zz"),                 # '+' must be followed by two upper-case hex digits
    ("mail", "ENVID=a+2"),
    ("mail", "ENVID=" + "x" * 101),         # at most 100 characters
    ("mail", "ENVID="),
    ("rcpt", "NOTIFY=BOGUS"),
    ("rcpt", "NOTIFY=NEVER,SUCCESS"),       # NEVER stands alone
    ("rcpt", "NOTIFY="),
    ("rcpt", "NOTIFY=SUCCESS NOTIFY=DELAY"),
    ("rcpt", "ORCPT=noaddresstype"),
    ("rcpt", "ORCPT=rfc822;bad+zzxtext@other.org"),
    ("rcpt", "ORCPT=rfc822;"),
])
def test_dsn_invalid_values(server, alice, where, params):
    with session(server, "submission", alice) as c:
        if where == "mail":
            r = c.mail(alice[0], params)
        else:
            assert c.mail(alice[0]) == MAIL_OK
            r = c.rcpt("j@other.org", params)
        assert r.code == 501 and r.enhanced == "5.5.4", "%s %s\n%s" % (where, params, c.transcript())
        c.quit()


# ---------------------------------------------------------------- durability

def test_kill9_after_250_keeps_the_queued_message(server_factory):
    srv = server_factory(SERVER_CONFIG)
    alice = srv.add_user()
    rcpt = "kill9-%s@other.org" % rnd()
    marker = ("survives kill -9 %s" % rnd()).encode()
    msg = own_message(alice[0], "kill -9", body=marker + b"\r\n")
    with session(srv, "submission", alice) as c:
        assert_queued(c.send_mail(alice[0], [rcpt], msg), c)
        srv.kill9()
    srv.start(new_ports=False)
    msgs, envs = srv.queue_files("msg"), srv.queue_files("env")
    assert len(msgs) == 1 and len(envs) == 1, (msgs, envs)
    assert marker in msgs[0].read_bytes()
    assert rcpt.encode() in envs[0].read_bytes()
    srv.assert_smtp_alive()
