"""test_smtp_inbound.py — mail from other servers on port 25 (RFC 5321;
SPEC section 5): local recipients (users, aliases, catch-all,
plus-addressing) are delivered into their Maildir with Return-Path,
Delivered-To and Received on top and the message otherwise byte-identical;
unknown local recipients get 550 5.1.1; every other destination, however it
is written (source routes, '%' hack, two '@'), is refused with 554 5.7.1 and
never relayed; recipient limits; one copy a mailbox; SMTPUTF8 and 8BITMIME
stored byte-exact."""

import os

import pytest

from pobox_harness import (DEAD_SMARTHOST, DOMAIN, assert_queued, check_trace,
                           lf, smtp_message, split_trace)

CATCH = "catch.example"         # a second local domain with a catch-all
SERVER_CONFIG = {"server": {"domains": "%s, %s" % (DOMAIN, CATCH)},
                 "auth": {"plaintext_without_tls": "yes", "failure_delay": "0"},
                 "relay": {"smarthost": DEAD_SMARTHOST}}

MAIL_OK = (250, [b"2.1.0 Ok"])
RCPT_OK = (250, [b"2.1.5 Ok"])
SENDER = "sender@example.net"


def rnd():
    return os.urandom(3).hex()


def user_unknown(addr):
    return (550, [b"5.1.1 <%s>: Recipient address rejected: User unknown" % addr.encode()])


def relay_denied(addr):
    return (554, [b"5.7.1 <%s>: Relay access denied" % addr.encode()])


@pytest.fixture(scope="module")
def alice(server):
    return server.add_user()


@pytest.fixture(scope="module")
def bob(server):
    return server.add_user()


@pytest.fixture(scope="module")
def catchall(server):
    """(catch-all target user, a real user of the catch-all domain)."""
    target, _ = server.add_user()
    real, _ = server.add_user("real%s@%s" % (target.split("@")[0], CATCH))
    server.alias_add("@" + CATCH, target)
    return target, real


def conn(server):
    c = server.smtp_connect("smtp")
    assert c.greeting.code == 220, c.greeting
    assert c.ehlo("mx.example.net").code == 250, c.transcript()
    return c


def send(server, rcpts, msg, sender=SENDER, mail_params=""):
    with conn(server) as c:
        r = c.send_mail(sender, rcpts, msg, mail_params)
        assert_queued(r, c)
        c.quit()
    return r


def only_new(server, user, before):
    got = server.delivered(user)
    assert len(got) == before + 1, "%s: %d new files, expected 1" % (user, len(got) - before)
    return got[-1]


TRICKY_BODY = (b"first line\r\n"
               b".a line that starts with a dot\r\n"
               b"..two dots\r\n"
               b".\r\n"
               b"From the start of a line\r\n"
               b"trailing spaces   \r\n"
               b"\ttab at the start\r\n"
               b"\r\n"
               b"\r\n"
               b"x" * 998 + b"\r\n"
               b"last line without anything special\r\n")


# ---------------------------------------------------------------- local delivery

def test_delivery_to_a_local_user(server, alice):
    user = alice[0]
    msg = smtp_message("inbound", TRICKY_BODY,
                       extra_headers=b"X-Folded: first part\r\n\tsecond part\r\n"
                                     b"X-Empty:\r\n")
    before = len(server.delivered(user))
    send(server, [user], msg)
    stored = only_new(server, user, before)
    assert b"\r" not in stored, "the Maildir file has CR characters"
    check_trace(stored, msg, SENDER, [user], "ESMTP", helo="mx.example.net")


def test_trace_fields_are_on_top_of_existing_ones(server, alice):
    """A message that already went through other servers keeps its own
    trace fields, below the ones pobox adds."""
    user = alice[0]
    msg = (b"Received: from a.example.net by b.example.net; Mon, 2 Jan 2023 10:00:00 +0000\r\n"
           b"Received: from c.example.net\r\n by a.example.net; Mon, 2 Jan 2023 09:59:00 +0000\r\n"
           + smtp_message("hops"))
    before = len(server.delivered(user))
    send(server, [user], msg)
    check_trace(only_new(server, user, before), msg, SENDER, [user], "ESMTP")


def test_helo_client_is_recorded_as_smtp(server, alice):
    user = alice[0]
    msg = smtp_message("helo")
    before = len(server.delivered(user))
    with server.smtp_connect("smtp") as c:
        assert c.cmd("HELO old.example.net").code == 250
        assert_queued(c.send_mail(SENDER, [user], msg), c)
        c.quit()
    check_trace(only_new(server, user, before), msg, SENDER, [user], "SMTP",
                helo="old.example.net")


def test_null_sender(server, alice):
    """Bounces come from <> and must be accepted (RFC 5321 4.5.5)."""
    user = alice[0]
    msg = smtp_message("a bounce", sender="MAILER-DAEMON@example.net")
    before = len(server.delivered(user))
    with conn(server) as c:
        assert c.cmd("MAIL FROM:<>") == MAIL_OK, c.transcript()
        assert c.rcpt(user) == RCPT_OK
        r354, r = c.data(msg)
        assert_queued(r, c)
        c.quit()
    check_trace(only_new(server, user, before), msg, "", [user], "ESMTP")


def test_from_header_is_not_checked_on_port_25(server, alice):
    user = alice[0]
    msg = smtp_message("forged looking", sender=alice[0])
    before = len(server.delivered(user))
    send(server, [user], msg, sender="list-bounces@example.net")
    check_trace(only_new(server, user, before), msg, "list-bounces@example.net", [user], "ESMTP")


def test_domain_is_case_insensitive(server, alice):
    user = alice[0]
    local = user.split("@")[0]
    msg = smtp_message("upper case domain")
    before = len(server.delivered(user))
    send(server, [local + "@" + DOMAIN.upper()], msg)
    check_trace(only_new(server, user, before), msg, SENDER, [user], "ESMTP")


def test_message_is_on_disk_before_the_reply(server, alice):
    """The 250 comes after the file is in new/: no waiting needed."""
    user = alice[0]
    with conn(server) as c:
        for i in range(3):
            before = len(server.delivered(user))
            assert_queued(c.send_mail(SENDER, [user], smtp_message("sync %d" % i)), c)
            assert len(server.delivered(user)) == before + 1
        c.quit()
    assert server.tmp_files(user) == [], "files left in tmp/"


# ---------------------------------------------------------------- refused recipients

def test_unknown_local_recipient(server, alice):
    with conn(server) as c:
        assert c.mail(SENDER) == MAIL_OK
        for addr in ("nobody-%s@%s" % (rnd(), DOMAIN), "NoBody@" + DOMAIN):
            assert c.rcpt(addr) == user_unknown(addr), c.transcript()
        # the transaction goes on with a good recipient
        assert c.rcpt(alice[0]) == RCPT_OK, c.transcript()
        c.quit()


@pytest.mark.parametrize("addr", ["someone@other.org", "user@sub.example.org",
                                  "user@example.org.evil.example", "user@example.orgx",
                                  "user@xexample.org", "postmaster@other.org"])
def test_other_domains_are_not_relayed(server, addr):
    before = server.queue_count()
    with conn(server) as c:
        assert c.mail(SENDER) == MAIL_OK
        assert c.rcpt(addr) == relay_denied(addr), c.transcript()
        assert c.cmd("DATA") == (503, [b"5.5.1 Need RCPT before DATA"]), c.transcript()
        c.quit()
    assert server.queue_count() == before


@pytest.mark.parametrize("addr", [
    "user@other.org@example.org",           # two '@': the real destination is other.org
    "@example.org:user@other.org",          # source route (RFC 5321 4.1.1.3)
    "@example.org,@mail.example.org:user@other.org",
    '"user@other.org"@other.org',
    "user@other.org.",                      # trailing dot
    "user@[192.0.2.1]",                     # address literal
    "user@other.org\x00@example.org",
])
def test_tricky_relay_attempts_are_refused(server, addr):
    before = server.queue_count()
    with conn(server) as c:
        assert c.mail(SENDER) == MAIL_OK
        r = c.rcpt(addr)
        assert r.code in (500, 501, 550, 553, 554) and r.enhanced and r.enhanced.startswith("5."), \
            "RCPT TO:<%r> answered %r\n%s" % (addr, r, c.transcript())
        if r.code == 554:
            assert r.enhanced == "5.7.1", c.transcript()
        assert c.cmd("DATA").code == 503, c.transcript()
        c.quit()
    assert server.queue_count() == before, "something was queued"


@pytest.mark.parametrize("addr", ["user%other.org@example.org", "user%other.org",
                                  "other.org!user@example.org", "other.org!user"])
def test_percent_and_bang_hacks_are_never_relayed(server, addr):
    """Unknown local user (550 5.1.1) or relay denied (554 5.7.1, or 501 for
    an address without a domain): never accepted."""
    before = server.queue_count()
    with conn(server) as c:
        assert c.mail(SENDER) == MAIL_OK
        r = c.rcpt(addr)
        assert r.code in (501, 550, 554), "RCPT TO:<%s>: %r" % (addr, r)
        if r.code == 550:
            assert r == user_unknown(addr), c.transcript()
        elif r.code == 554:
            assert r == relay_denied(addr), c.transcript()
        c.quit()
    assert server.queue_count() == before


def test_source_route_to_a_local_user(server, alice):
    """A source route ending in a local mailbox: the route is ignored (RFC
    5321 appendix C) or the address refused as malformed; it never goes
    anywhere but the local mailbox."""
    user = alice[0]
    before_q = server.queue_count()
    before = len(server.delivered(user))
    with conn(server) as c:
        assert c.mail(SENDER) == MAIL_OK
        r = c.rcpt("@other.org:" + user)
        assert r.code in (250, 501), c.transcript()
        if r.code == 250:
            assert_queued(c.data(smtp_message("routed"))[1], c)
            assert len(server.delivered(user)) == before + 1
        c.quit()
    assert server.queue_count() == before_q


# ---------------------------------------------------------------- aliases, catch-all, plus

def test_bare_postmaster(server, alice):
    """RFC 5321 4.5.1: 'Postmaster' without a domain (any case) must be
    accepted; it is the postmaster of the primary domain."""
    user = alice[0]
    server.alias_add("postmaster@" + DOMAIN, user)
    msg = smtp_message("to the postmaster")
    before = len(server.delivered(user))
    with conn(server) as c:
        assert c.mail(SENDER) == MAIL_OK
        assert c.rcpt("Postmaster") == RCPT_OK, c.transcript()
        assert_queued(c.data(msg)[1], c)
        c.quit()
    got = server.delivered(user)
    assert len(got) == before + 1
    split_trace(got[-1], msg)


def test_alias_to_a_user(server, alice):
    user = alice[0]
    alias = "postmaster-%s@%s" % (rnd(), DOMAIN)
    server.alias_add(alias, user)
    msg = smtp_message("via alias")
    before = len(server.delivered(user))
    send(server, [alias], msg)
    check_trace(only_new(server, user, before), msg, SENDER, [user, alias], "ESMTP")
    assert server.delivered(alias) == [], "an alias got a Maildir of its own"


def test_alias_to_two_users(server, alice, bob):
    alias = "team-%s@%s" % (rnd(), DOMAIN)
    server.alias_add(alias, alice[0], bob[0])
    msg = smtp_message("to the team")
    counts = {u: len(server.delivered(u)) for u in (alice[0], bob[0])}
    send(server, [alias], msg)
    for u in counts:
        check_trace(only_new(server, u, counts[u]), msg, SENDER, [u, alias], "ESMTP")


def test_catch_all(server, catchall):
    target, real = catchall
    msg = smtp_message("to anybody at the catch-all domain")
    before = len(server.delivered(target))
    addr = "anything-at-all@" + CATCH
    send(server, [addr], msg)
    check_trace(only_new(server, target, before), msg, SENDER, [target, addr], "ESMTP")


def test_catch_all_does_not_take_real_users_mail(server, catchall):
    target, real = catchall
    before_t = len(server.delivered(target))
    msg = smtp_message("to a real user of the catch-all domain")
    send(server, [real], msg)
    check_trace(only_new(server, real, 0), msg, SENDER, [real], "ESMTP")
    assert len(server.delivered(target)) == before_t


def test_catch_all_is_for_its_domain_only(server, catchall):
    addr = "nobody-%s@%s" % (rnd(), DOMAIN)
    with conn(server) as c:
        assert c.mail(SENDER) == MAIL_OK
        assert c.rcpt(addr) == user_unknown(addr), c.transcript()
        c.quit()


def test_alias_chain(server, alice):
    """An alias of an alias of a user."""
    user = alice[0]
    inner = "inner-%s@%s" % (rnd(), DOMAIN)
    outer = "outer-%s@%s" % (rnd(), DOMAIN)
    server.alias_add(inner, user)
    server.alias_add(outer, inner)
    msg = smtp_message("through two aliases")
    before = len(server.delivered(user))
    send(server, [outer], msg)
    check_trace(only_new(server, user, before), msg, SENDER, [user, inner, outer], "ESMTP")


def test_alias_loop_is_not_followed_forever(server, alice):
    """a -> b -> a: refused when created, or answered (accepted for no one,
    or refused) without hanging the server."""
    a = "loop-a-%s@%s" % (rnd(), DOMAIN)
    b = "loop-b-%s@%s" % (rnd(), DOMAIN)
    server.alias_add(a, b)
    r = server.cli("alias", "add", b, a)
    if r.returncode != 0:
        return                          # the loop was refused when it was made
    with conn(server) as c:
        assert c.mail(SENDER) == MAIL_OK
        r = c.rcpt(a)
        assert r.code in (250, 450, 451, 550, 554), c.transcript()
        if r.code == 250:
            r354, r = c.data(smtp_message("loop"))
            assert r is not None, c.transcript()
        c.quit()
    server.assert_smtp_alive()


def test_plus_addressing_in_the_catch_all_domain(server, catchall):
    target, _ = catchall
    msg = smtp_message("plus at the catch-all")
    before = len(server.delivered(target))
    addr = "someone+tag@" + CATCH
    send(server, [addr], msg)
    check_trace(only_new(server, target, before), msg, SENDER, [target, addr], "ESMTP")


@pytest.mark.parametrize("local", ['"../../../../tmp/pobox-escape"', '"..%2f..%2fx"',
                                   '"a/b"', '".."', '"."', "..a", "a..b"])
def test_local_parts_never_become_paths(server, catchall, local):
    """Local parts that look like paths: unknown (or malformed) in a domain
    without catch-all, the catch-all's mailbox in the other; no directory
    appears anywhere else."""
    mail = server.data_dir / "mail"
    dirs_before = sorted(str(p) for p in mail.rglob("*") if p.is_dir())
    target, _ = catchall
    before = len(server.delivered(target))
    with conn(server) as c:
        assert c.mail(SENDER) == MAIL_OK
        r = c.rcpt("%s@%s" % (local, DOMAIN))
        assert r.code in (501, 550), c.transcript()
        r = c.rcpt("%s@%s" % (local, CATCH))
        if r.code == 250:
            assert_queued(c.data(smtp_message("path-like"))[1], c)
            assert len(server.delivered(target)) == before + 1
        else:
            assert r.code == 501, c.transcript()
        c.quit()
    assert sorted(str(p) for p in mail.rglob("*") if p.is_dir()) == dirs_before
    assert not os.path.exists("/tmp/pobox-escape")


def test_plus_addressing(server, alice):
    user = alice[0]
    local, domain = user.split("@")
    msg = smtp_message("plus tag")
    before = len(server.delivered(user))
    addr = "%s+newsletters@%s" % (local, domain)
    send(server, [addr], msg)
    check_trace(only_new(server, user, before), msg, SENDER, [user, addr], "ESMTP")


def test_plus_addressing_of_an_unknown_user(server):
    addr = "nobody%s+tag@%s" % (rnd(), DOMAIN)
    with conn(server) as c:
        assert c.mail(SENDER) == MAIL_OK
        assert c.rcpt(addr) == user_unknown(addr), c.transcript()
        c.quit()


def test_one_copy_per_mailbox(server, alice, bob):
    """The same mailbox reached directly, twice, through an alias, with a
    plus tag and with another case of the domain gets one copy."""
    a, b = alice[0], bob[0]
    local, domain = a.split("@")
    alias = "both-%s@%s" % (rnd(), DOMAIN)
    server.alias_add(alias, a, b)
    counts = {u: len(server.delivered(u)) for u in (a, b)}
    msg = smtp_message("many recipients")
    send(server, [a, a, alias, "%s+x@%s" % (local, domain), local + "@" + domain.upper(), b],
         msg)
    for u in (a, b):
        got = server.delivered(u)
        assert len(got) == counts[u] + 1, "%s got %d copies" % (u, len(got) - counts[u])
        split_trace(got[-1], msg)


def test_received_does_not_disclose_other_recipients(server, alice, bob):
    """With several recipients, no copy names the others (Bcc)."""
    msg = smtp_message("bcc")
    counts = {u: len(server.delivered(u)) for u in (alice[0], bob[0])}
    send(server, [alice[0], bob[0]], msg)
    for me, other in ((alice[0], bob[0]), (bob[0], alice[0])):
        stored = only_new(server, me, counts[me])
        head = stored[:len(stored) - len(lf(msg))]
        assert other.encode() not in head, "%s's copy names %s: %r" % (me, other, head)


# ---------------------------------------------------------------- limits

@pytest.fixture(scope="module")
def few(server_factory):
    return server_factory({"limits": {"max_recipients": "3"},
                           "relay": {"smarthost": DEAD_SMARTHOST}})


def test_max_recipients(few):
    users = [few.add_user()[0] for _ in range(4)]
    msg = smtp_message("three of four")
    with conn(few) as c:
        assert c.mail(SENDER) == MAIL_OK
        for u in users[:3]:
            assert c.rcpt(u) == RCPT_OK, c.transcript()
        assert c.rcpt(users[3]) == (452, [b"4.5.3 Too many recipients"]), c.transcript()
        r354, r = c.data(msg)
        assert_queued(r, c)
        c.quit()
    for u in users[:3]:
        assert len(few.delivered(u)) == 1, u
    assert few.delivered(users[3]) == []


def test_default_max_recipients_is_1000(server, alice):
    """1001 recipients pipelined: 1000 accepted, the 1001st gets 452; the
    mailbox they all lead to gets one copy."""
    user = alice[0]
    local, domain = user.split("@")
    before = len(server.delivered(user))
    with conn(server) as c:
        c.send(b"MAIL FROM:<%s>\r\n" % SENDER.encode() + b"".join(
            b"RCPT TO:<%s+%d@%s>\r\n" % (local.encode(), i, domain.encode()) for i in range(1001)))
        assert c.reply() == MAIL_OK, c.transcript()
        replies = c.replies(1001)
        assert replies[:1000] == [RCPT_OK] * 1000, [r for r in replies[:1000] if r != RCPT_OK][:3]
        assert replies[1000] == (452, [b"4.5.3 Too many recipients"]), replies[1000]
        assert_queued(c.data(smtp_message("a thousand"))[1], c)
        c.quit()
    assert len(server.delivered(user)) == before + 1


# ---------------------------------------------------------------- 8BITMIME, SMTPUTF8

def test_8bitmime_body_stored_byte_exact(server, alice):
    user = alice[0]
    body = "Grüße, ça va? — 日本語\r\n".encode("utf-8") + b"latin-1: \xe9\xe8\xff\r\n"
    msg = smtp_message("8bit", body, extra_headers=b"Content-Type: text/plain; charset=utf-8\r\n"
                                                   b"Content-Transfer-Encoding: 8bit\r\n")
    before = len(server.delivered(user))
    send(server, [user], msg, mail_params="BODY=8BITMIME")
    check_trace(only_new(server, user, before), msg, SENDER, [user], "ESMTP")


@pytest.fixture(scope="module")
def juergen(server):
    return server.add_user("jürgen%s@%s" % (rnd(), DOMAIN))


def test_smtputf8_addresses_and_headers(server, juergen):
    user = juergen[0]
    sender = "josé@exämple.net"
    msg = ("From: José <%s>\r\nTo: Jürgen <%s>\r\nSubject: Grüße\r\n"
           "Message-ID: <ü-1@exämple.net>\r\nDate: Mon, 02 Jan 2023 10:00:00 +0000\r\n"
           "\r\nHallo Jürgen!\r\n" % (sender, user)).encode("utf-8")
    before = len(server.delivered(user))
    with conn(server) as c:
        assert "SMTPUTF8" in c.extensions()
        assert c.mail(sender, "SMTPUTF8 BODY=8BITMIME") == MAIL_OK, c.transcript()
        assert c.rcpt(user) == RCPT_OK, c.transcript()
        r354, r = c.data(msg)
        assert_queued(r, c)
        c.quit()
    got = server.delivered(user)
    assert len(got) == before + 1
    # RFC 6531 section 3.7.3 names the protocol UTF8SMTP; ESMTP is fine too
    check_trace(got[-1], msg, sender, [user], ("UTF8SMTP", "ESMTP"))


def test_utf8_sender_without_smtputf8_is_refused(server):
    with conn(server) as c:
        r = c.mail("josé@exämple.net")
        assert r.code in (501, 550, 553, 555) and r.enhanced and r.enhanced.startswith("5."), \
            c.transcript()
        # the session goes on
        assert c.mail(SENDER) == MAIL_OK, c.transcript()
        c.quit()


def test_utf8_recipient_without_smtputf8_is_refused(server, juergen):
    before = len(server.delivered(juergen[0]))
    with conn(server) as c:
        assert c.mail(SENDER) == MAIL_OK
        r = c.rcpt(juergen[0])
        assert r.code in (501, 550, 553, 555) and r.enhanced and r.enhanced.startswith("5."), \
            c.transcript()
        c.quit()
    assert len(server.delivered(juergen[0])) == before


def test_invalid_utf8_address_is_refused_even_with_smtputf8(server):
    with conn(server) as c:
        r = c.cmd(b"MAIL FROM:<jos\xe9@example.net> SMTPUTF8")
        assert r.code // 100 == 5, c.transcript()
        assert c.mail(SENDER) == MAIL_OK, c.transcript()
        c.quit()


# ---------------------------------------------------------------- robustness

def test_delivery_while_a_pop3_session_is_open(server):
    """The POP3 maildrop lock never delays delivery (SPEC section 4)."""
    user, pw = server.add_user()
    msg = smtp_message("during a POP3 session")
    with server.session(user, pw) as p:
        assert p.stat() == (0, 0)
        send(server, [user], msg)
        assert len(server.delivered(user)) == 1
        # numbers are fixed at login: the new message waits for the next session
        assert p.stat() == (0, 0)
        p.quit()
    with server.session(user, pw) as p:
        assert p.stat()[0] == 1
        assert p.retr(1).endswith(msg)
        p.quit()


def test_parallel_deliveries_to_one_mailbox(server):
    """Eight clients at once, five messages each, one mailbox: 40 files,
    each message once and intact."""
    import threading
    user, _ = server.add_user()
    msgs = [[smtp_message("parallel %d/%d" % (t, i), os.urandom(16).hex().encode() + b"\r\n")
             for i in range(5)] for t in range(8)]
    errors = []

    def client(batch):
        try:
            with conn(server) as c:
                for m in batch:
                    assert_queued(c.send_mail(SENDER, [user], m), c)
                c.quit()
        except Exception as e:          # reported below, in the main thread
            errors.append(e)

    threads = [threading.Thread(target=client, args=(b,)) for b in msgs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    got = server.delivered(user)
    assert len(got) == 40, "%d files for 40 messages" % len(got)
    bodies = sorted(lf(m) for batch in msgs for m in batch)
    stored = sorted(g[g.index(b"From: "):] for g in got)
    assert stored == bodies


@pytest.fixture(scope="module")
def broken(server_factory):
    return server_factory({"relay": {"smarthost": DEAD_SMARTHOST}})


@pytest.mark.parametrize("which", ["users", "aliases"])
def test_unreadable_users_or_aliases_is_a_temporary_failure(broken, which):
    user, _ = broken.add_user()
    alias = "alias-%s@%s" % (rnd(), DOMAIN)
    broken.alias_add(alias, user)
    path = broken.data_dir / which
    assert path.is_file(), "no %s file in data_dir" % which
    saved = broken.data_dir / (which + ".saved-by-test")
    os.rename(path, saved)
    path.mkdir()                        # root reads anything: a directory cannot be read
    try:
        with conn(broken) as c:
            assert c.mail(SENDER) == MAIL_OK
            for rcpt in (user, alias):
                assert c.rcpt(rcpt) == (451, [b"4.3.0 Temporary lookup failure"]), \
                    c.transcript()
            c.quit()
    finally:
        path.rmdir()
        os.rename(saved, path)
    send(broken, [user, alias], smtp_message("after the repair"))
    assert len(broken.delivered(user)) == 1
