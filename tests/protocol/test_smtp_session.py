"""test_smtp_session.py — the SMTP session (RFC 5321, RFC 2920, RFC 2034/3463;
SPEC section 5, docs/smtp.md): greeting, EHLO/HELO and the extensions
offered, command order (503), syntax errors (500/501 with their enhanced
codes), RSET, NOOP, VRFY without disclosure, EXPN, HELP, QUIT, the command
line limit, PIPELINING of whole transactions, the error limit (421) and the
idle timeout."""

import socket
import time

import pytest

from pobox_harness import HOSTNAME, assert_queued, dot_stuff, smtp_message, split_trace

SERVER_CONFIG = {"auth": {"plaintext_without_tls": "yes", "failure_delay": "0"}}

H = HOSTNAME.encode()
OK = (250, [b"2.0.0 Ok"])
MAIL_OK = (250, [b"2.1.0 Ok"])
RCPT_OK = (250, [b"2.1.5 Ok"])
SEND_EHLO_FIRST = (503, [b"5.5.1 Send EHLO or HELO first"])
VRFY_REPLY = (252, [b"2.5.0 Cannot VRFY user, but will accept message and attempt delivery"])
UNRECOGNIZED = (500, [b"5.5.2 Command unrecognized"])
LINE_TOO_LONG = (500, [b"5.5.2 Line too long"])


@pytest.fixture(scope="module")
def alice(server):
    return server.add_user()


def connect(server, listener="smtp"):
    c = server.smtp_connect(listener)
    assert c.greeting.code == 220, c.greeting
    return c


def ehlo_conn(server, listener="smtp"):
    c = connect(server, listener)
    r = c.ehlo()
    assert r.code == 250, c.transcript()
    return c


def user_unknown(addr):
    return (550, [b"5.1.1 <%s>: Recipient address rejected: User unknown" % addr.encode()])


# ---------------------------------------------------------------- greeting

@pytest.mark.parametrize("listener", ["smtp", "submission", "submissions"])
def test_greeting(server, listener):
    with server.smtp_connect(listener) as c:
        assert c.greeting == (220, [H + b" ESMTP pobox"]), c.transcript()
        assert c.quit() == (221, [b"2.0.0 Bye"])


def test_quit_closes_the_connection(server):
    with connect(server) as c:
        c.send(b"QUIT\r\n")
        assert c.reply() == (221, [b"2.0.0 Bye"]), c.transcript()
        assert c.wait_closed(5) == b""


# ---------------------------------------------------------------- EHLO / HELO

def test_ehlo_reply_on_port_25(server):
    with connect(server) as c:
        r = c.ehlo("client.example.net")
        assert r.code == 250, c.transcript()
        assert r.lines[0] == H, "first EHLO line is not the hostname: %r" % r.lines[0]
        assert r.lines[-1] == b"HELP", "last EHLO line is not HELP: %r" % r.lines[-1]
        for l in r.lines:
            assert l and l == l.strip() and b"  " not in l, "stray whitespace: %r" % r.lines
        ext = c.extensions()
        keywords = [l.split()[0].upper() for l in r.lines[1:]]
        assert len(keywords) == len(set(keywords)), "keyword offered twice: %r" % r.lines
        for k in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8",
                  "CHUNKING", "DSN", "STARTTLS", "HELP"):
            assert k in ext, "EHLO lacks %s: %r" % (k, r.lines)
        assert ext["SIZE"] == ["52428800"], r.lines       # limits.max_message_size default
        for k in ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8",
                  "CHUNKING", "DSN", "STARTTLS", "HELP"):
            assert ext[k] == [], "%s has parameters: %r" % (k, r.lines)
        # nothing beyond the documented list
        assert set(ext) <= {"PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES",
                            "SMTPUTF8", "CHUNKING", "DSN", "STARTTLS", "AUTH", "HELP"}, r.lines
        c.quit()


def test_ehlo_with_address_literal_and_twice(server):
    with connect(server) as c:
        assert c.ehlo("[127.0.0.1]").code == 250
        assert c.ehlo("[IPv6:::1]").code == 250
        assert c.ehlo("client.example.net").code == 250
        c.quit()


def test_helo(server, alice):
    with connect(server) as c:
        assert c.cmd("HELO client.example.net") == (250, [H]), c.transcript()
        assert c.mail("sender@example.net") == MAIL_OK, c.transcript()
        assert c.rcpt(alice[0]) == RCPT_OK, c.transcript()
        c.quit()


@pytest.mark.parametrize("line", ["EHLO", "HELO", "EHLO ", "HELO  "])
def test_ehlo_helo_without_domain(server, line):
    with connect(server) as c:
        r = c.cmd(line)
        assert r.code == 501 and r.enhanced == "5.5.4", c.transcript()
        # still no EHLO: the session has not started
        assert c.mail("a@example.net") == SEND_EHLO_FIRST, c.transcript()
        assert c.ehlo().code == 250
        c.quit()


# ---------------------------------------------------------------- order of commands

def test_commands_before_ehlo(server, alice):
    with connect(server) as c:
        assert c.mail("sender@example.net") == SEND_EHLO_FIRST, c.transcript()
        for line in ("RCPT TO:<%s>" % alice[0], "DATA", "AUTH PLAIN AGFAYQ==", "BDAT 0 LAST"):
            r = c.cmd(line)
            assert r.code == 503 and r.enhanced == "5.5.1", c.transcript()
        # allowed in any state (RFC 5321 4.1.4)
        assert c.cmd("NOOP") == OK, c.transcript()
        assert c.cmd("RSET") == OK, c.transcript()
        assert c.cmd("VRFY " + alice[0]) == VRFY_REPLY, c.transcript()
        assert c.cmd("HELP").code == 214, c.transcript()
        assert c.quit() == (221, [b"2.0.0 Bye"])


def test_commands_are_case_insensitive(server, alice):
    with connect(server) as c:
        assert c.cmd("eHlO client.example.net").code == 250
        assert c.cmd("mail from:<sender@example.net>") == MAIL_OK, c.transcript()
        assert c.cmd("Rcpt To:<%s>" % alice[0]) == RCPT_OK, c.transcript()
        assert c.cmd("noop") == OK
        assert c.cmd("rset") == OK
        assert c.cmd("quit") == (221, [b"2.0.0 Bye"])


def test_mail_twice(server):
    with ehlo_conn(server) as c:
        assert c.mail("sender@example.net") == MAIL_OK
        assert c.mail("other@example.net") == (503, [b"5.5.1 Sender already specified"]), \
            c.transcript()
        c.quit()


def test_rcpt_before_mail(server, alice):
    with ehlo_conn(server) as c:
        assert c.rcpt(alice[0]) == (503, [b"5.5.1 Need MAIL before RCPT"]), c.transcript()
        c.quit()


def test_data_without_valid_rcpt(server):
    need_rcpt = (503, [b"5.5.1 Need RCPT before DATA"])
    with ehlo_conn(server) as c:
        assert c.cmd("DATA") == need_rcpt, c.transcript()
        assert c.mail("sender@example.net") == MAIL_OK
        assert c.cmd("DATA") == need_rcpt, c.transcript()
        # a refused recipient is no recipient
        assert c.rcpt("nobody-here@example.org").code == 550
        assert c.cmd("DATA") == need_rcpt, c.transcript()
        # nothing was taken as message data: the session goes on
        assert c.cmd("NOOP") == OK
        c.quit()


def test_rset_clears_the_transaction(server, alice):
    user = alice[0]
    with ehlo_conn(server) as c:
        assert c.mail("sender@example.net") == MAIL_OK
        assert c.rcpt(user) == RCPT_OK
        assert c.cmd("RSET") == OK
        assert c.rcpt(user) == (503, [b"5.5.1 Need MAIL before RCPT"]), c.transcript()
        assert c.cmd("DATA").code == 503
        # a new transaction after RSET is delivered only to its own recipient
        assert c.mail("sender@example.net") == MAIL_OK
        assert c.rcpt(user) == RCPT_OK
        assert c.cmd("RSET") == OK
        before = len(server.delivered(user))
        assert c.mail("second@example.net") == MAIL_OK, c.transcript()
        c.quit()
    assert len(server.delivered(user)) == before


def test_ehlo_again_clears_the_transaction(server, alice):
    with ehlo_conn(server) as c:
        assert c.mail("sender@example.net") == MAIL_OK
        assert c.rcpt(alice[0]) == RCPT_OK
        assert c.ehlo().code == 250
        assert c.rcpt(alice[0]) == (503, [b"5.5.1 Need MAIL before RCPT"]), c.transcript()
        assert c.mail("sender@example.net") == MAIL_OK, c.transcript()
        c.quit()


def test_transaction_ends_after_the_message(server, alice):
    with ehlo_conn(server) as c:
        assert_queued(c.send_mail("sender@example.net", [alice[0]], smtp_message()), c)
        assert c.rcpt(alice[0]) == (503, [b"5.5.1 Need MAIL before RCPT"]), c.transcript()
        assert c.cmd("DATA").code == 503
        assert c.mail("sender@example.net") == MAIL_OK
        c.quit()


# ---------------------------------------------------------------- NOOP, VRFY, EXPN, HELP

def test_noop(server):
    with ehlo_conn(server) as c:
        assert c.cmd("NOOP") == OK
        assert c.cmd("NOOP some argument") == OK, c.transcript()
        c.quit()


def test_vrfy_does_not_disclose_users(server, alice):
    """The same 252 for an existing user, an unknown one, another domain
    and a bare name."""
    with ehlo_conn(server) as c:
        for arg in (alice[0], "<%s>" % alice[0], "nobody-at-all@example.org",
                    alice[0].split("@")[0], "postmaster"):
            assert c.cmd("VRFY " + arg) == VRFY_REPLY, c.transcript()
        c.quit()


def test_expn_not_supported(server, alice):
    with ehlo_conn(server) as c:
        for arg in (alice[0], "staff", "nobody@example.org"):
            assert c.cmd("EXPN " + arg) == (502, [b"5.5.1 EXPN not supported"]), c.transcript()
        c.quit()


def test_help(server):
    with ehlo_conn(server) as c:
        r = c.cmd("HELP")
        assert r.code == 214 and r.enhanced == "2.0.0", c.transcript()
        r = c.cmd("HELP MAIL")
        assert r.code in (214, 504) and r.enhanced in ("2.0.0", "5.5.4", "5.5.1"), c.transcript()
        assert c.cmd("NOOP") == OK
        c.quit()


def test_vrfy_without_argument(server):
    with ehlo_conn(server) as c:
        r = c.cmd("VRFY")
        assert r.code == 501 and r.enhanced == "5.5.4", c.transcript()
        c.quit()


def test_every_reply_has_a_matching_enhanced_code(server, alice):
    """RFC 2034 section 3: once ENHANCEDSTATUSCODES is offered, every reply
    but the greeting and EHLO/HELO carries an enhanced code of the same
    class."""
    lines = ["NOOP", "RSET", "VRFY x", "EXPN x", "HELP", "BOGUS", "MAIL FROM:<bad",
             "RCPT TO:<%s>" % alice[0], "DATA", "MAIL FROM:<s@example.net>",
             "MAIL FROM:<s@example.net>", "RCPT TO:<nobody-x@example.org>",
             "RCPT TO:<x@other.org>", "RCPT TO:<%s>" % alice[0], "BDAT x", "AUTH FOO",
             "STARTTLS x", "NOOP " + "n" * 600, "RSET", "QUIT"]
    with ehlo_conn(server) as c:
        for line in lines:
            r = c.cmd(line)
            assert r.enhanced and r.enhanced[0] == str(r.code)[0], \
                "%s -> %r\n%s" % (line, r, c.transcript())


# ---------------------------------------------------------------- bad commands and syntax

@pytest.mark.parametrize("line", [b"FOO", b"XYZZY arg", b"MAILFROM:<a@example.net>",
                                  b"\x01\x02\xff"])
def test_unknown_command(server, line):
    with ehlo_conn(server) as c:
        r = c.cmd(line)
        if line.isalpha() or line == b"XYZZY arg":
            assert r == UNRECOGNIZED, c.transcript()
        else:
            assert r.code == 500 and r.enhanced == "5.5.2", c.transcript()
        assert c.cmd("NOOP") == OK, c.transcript()
        c.quit()


@pytest.mark.parametrize("line", [b"SEND FROM:<a@example.net>", b"SAML FROM:<a@example.net>",
                                  b"SOML FROM:<a@example.net>", b"TURN", b"ETRN example.org",
                                  b"ATRN"])
def test_obsolete_commands_not_implemented(server, line):
    """Commands pobox does not implement: 500 or 502 (RFC 5321 4.2.4)."""
    with ehlo_conn(server) as c:
        r = c.cmd(line)
        assert r.code in (500, 502) and r.enhanced in ("5.5.1", "5.5.2"), c.transcript()
        assert c.cmd("NOOP") == OK, c.transcript()
        c.quit()


def test_empty_and_blank_lines(server):
    with ehlo_conn(server) as c:
        for line in (b"", b" ", b"\t"):
            r = c.cmd(line)
            assert r.code == 500 and r.enhanced == "5.5.2", c.transcript()
        assert c.cmd("NOOP") == OK
        c.quit()


@pytest.mark.parametrize("line", ["MAIL", "MAIL FROM", "MAIL FROM:", "MAIL TO:<a@example.net>",
                                  "MAIL FROM <a@example.net>"])
def test_mail_syntax_errors(server, line):
    with ehlo_conn(server) as c:
        r = c.cmd(line)
        assert r.code == 501 and r.enhanced in ("5.5.4", "5.1.7"), c.transcript()
        # no sender was set
        assert c.mail("sender@example.net") == MAIL_OK, c.transcript()
        c.quit()


@pytest.mark.parametrize("addr", ["<a@example.net", "<a b@example.net>", "<a@>",
                                  "<a@@example.net>", "<a@exa mple.net>", "<a@example.net>>",
                                  "<a\x01b@example.net>", "<a@example.net> <b@example.net>"])
def test_mail_malformed_sender_address(server, addr):
    with ehlo_conn(server) as c:
        r = c.cmd("MAIL FROM:" + addr)
        assert r.code in (501, 555) and r.enhanced in ("5.1.7", "5.5.4"), c.transcript()
        if "\x01" not in addr and " <" not in addr and ">>" not in addr:
            assert r.enhanced == "5.1.7", "malformed sender: %s\n%s" % (r, c.transcript())
        assert c.mail("sender@example.net") == MAIL_OK, c.transcript()
        c.quit()


@pytest.mark.parametrize("line", ["RCPT", "RCPT TO", "RCPT TO:", "RCPT FROM:<a@example.org>"])
def test_rcpt_syntax_errors(server, line):
    with ehlo_conn(server) as c:
        assert c.mail("sender@example.net") == MAIL_OK
        r = c.cmd(line)
        assert r.code == 501 and r.enhanced in ("5.5.4", "5.1.3"), c.transcript()
        c.quit()


@pytest.mark.parametrize("addr", ["<a@example.org", "<a b@example.org>", "<a@>",
                                  "<a@@example.org>", "<@>", "<>"])
def test_rcpt_malformed_recipient_address(server, addr):
    with ehlo_conn(server) as c:
        assert c.mail("sender@example.net") == MAIL_OK
        r = c.cmd("RCPT TO:" + addr)
        assert r.code == 501 and r.enhanced in ("5.1.3", "5.5.4"), c.transcript()
        if addr not in ("<>",):
            assert r.enhanced == "5.1.3", "malformed recipient: %s\n%s" % (r, c.transcript())
        c.quit()


@pytest.mark.parametrize("params", ["FOO=bar", "SIZE=abc", "SIZE=", "SIZE=-5",
                                    "BODY=BINARYMIME", "BODY=9BIT", "RET=FULL RET=HDRS"])
def test_mail_bad_parameters(server, params):
    with ehlo_conn(server) as c:
        r = c.mail("sender@example.net", params)
        # 555 is RFC 5321's "parameters not recognized", 504 RFC 1869's
        assert r.code in (501, 504, 555) and r.enhanced == "5.5.4", c.transcript()
        assert c.mail("sender@example.net") == MAIL_OK, c.transcript()
        c.quit()


@pytest.mark.parametrize("params", ["", "BODY=7BIT", "BODY=8BITMIME", "SIZE=1000",
                                    "body=8bitmime size=10"])
def test_mail_good_parameters(server, params):
    with ehlo_conn(server) as c:
        assert c.mail("sender@example.net", params) == MAIL_OK, c.transcript()
        c.quit()


def test_null_sender_accepted(server, alice):
    with ehlo_conn(server) as c:
        assert c.cmd("MAIL FROM:<>") == MAIL_OK, c.transcript()
        assert c.rcpt(alice[0]) == RCPT_OK
        c.quit()


def test_line_limit(server):
    """A command line is at most 512 octets with its CRLF (RFC 5321
    4.5.3.1.4): 512 is answered normally, longer ones get '500 5.5.2 Line
    too long' once, and the session goes on."""
    with ehlo_conn(server) as c:
        line = b"NOOP " + b"x" * (510 - 5)
        assert len(line) + 2 == 512
        assert c.cmd(line) == OK, c.transcript()
        assert c.cmd(b"NOOP " + b"x" * 600) == LINE_TOO_LONG, c.transcript()
        assert c.cmd("NOOP") == OK, c.transcript()
        # a very long line: one reply, and the whole line was consumed
        assert c.cmd(b"NOOP " + b"y" * 200000) == LINE_TOO_LONG, c.transcript()
        assert c.cmd("NOOP") == OK, c.transcript()
        assert c.pending(0.3) == b"", "more replies than commands"
        c.quit()


def test_long_line_does_not_set_a_sender(server, alice):
    with ehlo_conn(server) as c:
        r = c.cmd(b"MAIL FROM:<" + b"a" * 3000 + b"@example.net>")
        assert r.code in (500, 501) and r.code // 100 == 5, c.transcript()
        assert c.rcpt(alice[0]) == (503, [b"5.5.1 Need MAIL before RCPT"]), c.transcript()
        c.quit()


# ---------------------------------------------------------------- PIPELINING

def test_pipelined_transaction_with_data_in_one_write(server, alice):
    """EHLO to QUIT in one write (a client that does not wait for 354):
    every reply comes, in order, and the message is delivered."""
    user = alice[0]
    msg = smtp_message("pipelined data", b"one write\r\n.leading dot\r\n")
    before = len(server.delivered(user))
    with connect(server) as c:
        c.send(b"EHLO client.example.net\r\n"
               b"MAIL FROM:<sender@example.net>\r\n"
               b"RCPT TO:<nobody-pipelined@example.org>\r\n"
               b"RCPT TO:<" + user.encode() + b">\r\n"
               b"DATA\r\n" + dot_stuff(msg) +
               b"NOOP\r\n"
               b"QUIT\r\n")
        r = c.reply()
        assert r.code == 250 and r.lines[0] == H, c.transcript()
        assert c.reply() == MAIL_OK, c.transcript()
        assert c.reply() == user_unknown("nobody-pipelined@example.org"), c.transcript()
        assert c.reply() == RCPT_OK, c.transcript()
        assert c.reply().code == 354, c.transcript()
        assert_queued(c.reply(), c)
        assert c.reply() == OK, c.transcript()
        assert c.reply() == (221, [b"2.0.0 Bye"]), c.transcript()
        assert c.wait_closed(5) == b""
    got = server.delivered(user)
    assert len(got) == before + 1
    split_trace(got[-1], msg)


def test_pipelined_groups_rfc2920(server, alice):
    """The RFC 2920 way: MAIL, RCPTs and DATA in one write, the data after
    354, then the next transaction with QUIT."""
    user = alice[0]
    msgs = [smtp_message("group %d" % i) for i in range(2)]
    before = len(server.delivered(user))
    with ehlo_conn(server) as c:
        for m in msgs:
            c.send(b"MAIL FROM:<sender@example.net>\r\nRCPT TO:<%s>\r\n"
                   b"RCPT TO:<%s>\r\nDATA\r\n" % (user.encode(), user.encode()))
            assert c.replies(4) == [MAIL_OK, RCPT_OK, RCPT_OK,
                                    (354, [b"End data with <CR><LF>.<CR><LF>"])], c.transcript()
            c.send(dot_stuff(m))
            assert_queued(c.reply(), c)
        c.send(b"RSET\r\nQUIT\r\n")
        assert c.replies(2) == [OK, (221, [b"2.0.0 Bye"])], c.transcript()
    got = server.delivered(user)
    # one copy a transaction, though the recipient was given twice
    assert len(got) == before + 2, "%d new files for 2 messages" % (len(got) - before)
    for m, stored in zip(msgs, got[-2:]):
        split_trace(stored, m)


def test_pipelined_bdat_transaction(server, alice):
    user = alice[0]
    msg = smtp_message("pipelined bdat", b"chunked\r\n..two dots stay\r\n")
    half = len(msg) // 2
    before = len(server.delivered(user))
    with connect(server) as c:
        c.send(b"EHLO client.example.net\r\nMAIL FROM:<sender@example.net>\r\n"
               b"RCPT TO:<" + user.encode() + b">\r\n"
               b"BDAT %d\r\n" % half + msg[:half] +
               b"BDAT %d LAST\r\n" % (len(msg) - half) + msg[half:] +
               b"QUIT\r\n")
        assert c.reply().code == 250
        assert c.reply() == MAIL_OK, c.transcript()
        assert c.reply() == RCPT_OK, c.transcript()
        assert c.reply() == (250, [b"2.0.0 Ok: %d octets received" % half]), c.transcript()
        assert_queued(c.reply(), c)
        assert c.reply() == (221, [b"2.0.0 Bye"]), c.transcript()
    got = server.delivered(user)
    assert len(got) == before + 1
    split_trace(got[-1], msg)


def test_pipelined_errors_keep_their_order(server):
    with ehlo_conn(server) as c:
        c.send(b"RCPT TO:<a@example.org>\r\nFOO\r\nMAIL FROM:<x@example.net>\r\n"
               b"MAIL FROM:<y@example.net>\r\nRCPT TO:<a@other.org>\r\nVRFY x\r\nNOOP\r\n")
        got = c.replies(7)
        assert got == [(503, [b"5.5.1 Need MAIL before RCPT"]), UNRECOGNIZED, MAIL_OK,
                       (503, [b"5.5.1 Sender already specified"]),
                       (554, [b"5.7.1 <a@other.org>: Relay access denied"]),
                       VRFY_REPLY, OK], c.transcript()
        c.quit()


# ---------------------------------------------------------------- error limit and idle timeout

@pytest.fixture(scope="module")
def strict(server_factory):
    return server_factory({"auth": {"plaintext_without_tls": "yes", "failure_delay": "0"},
                           "limits": {"max_bad_commands": "5"}})


TOO_MANY = (421, [b"4.7.0 " + H + b" Error: too many errors"])


def test_too_many_errors_close_the_session(strict):
    with ehlo_conn(strict) as c:
        errors = 0
        for _ in range(10):
            r = c.cmd("BOGUS")
            if r.code != 500:
                break
            errors += 1
        assert r == TOO_MANY, c.transcript()
        assert 4 <= errors <= 5, "421 after %d bad commands (limit 5)\n%s" % (errors, c.transcript())
        assert c.wait_closed(5) == b""
    strict.assert_smtp_alive()


def test_too_many_errors_mixed_kinds(strict):
    """500, 501 and 503 all count."""
    with ehlo_conn(strict) as c:
        lines = ["BOGUS", "MAIL FROM:<bad", "RCPT TO:<a@example.org>", "DATA", "XYZ", "QQQ",
                 "ZZZ"]
        replies = []
        for line in lines:
            r = c.cmd(line)
            replies.append(r)
            if r.code == 421:
                break
        assert replies[-1] == TOO_MANY, c.transcript()
        assert 5 <= len(replies) <= 6, c.transcript()
        assert c.wait_closed(5) == b""


def test_pipelined_bad_commands_stop_at_the_limit(strict):
    with ehlo_conn(strict) as c:
        c.send(b"BOGUS\r\n" * 40)
        replies = []
        while True:
            try:
                replies.append(c.reply())
            except (EOFError, ConnectionResetError):
                break
        assert replies and replies[-1] == TOO_MANY, c.transcript()
        assert len(replies) <= 6, "%d replies after a limit of 5" % len(replies)
    strict.assert_smtp_alive()


def test_fewer_errors_than_the_limit_do_not_close(strict):
    with ehlo_conn(strict) as c:
        for _ in range(3):
            assert c.cmd("BOGUS") == UNRECOGNIZED
        assert c.cmd("NOOP") == OK
        assert c.mail("sender@example.net") == MAIL_OK
        c.quit()


@pytest.fixture(scope="module")
def idle(server_factory):
    return server_factory({"auth": {"plaintext_without_tls": "yes", "failure_delay": "0"},
                           "smtp": {"idle_timeout": "2s"}})


IDLE = (421, [b"4.4.2 " + H + b" Error: timeout exceeded"])


@pytest.mark.parametrize("where", ["greeting", "transaction", "data", "bdat"])
def test_idle_timeout(idle, where):
    user, _ = idle.add_user() if where in ("data", "bdat") else ("x@example.org", None)
    with connect(idle) as c:
        if where != "greeting":
            assert c.ehlo().code == 250
            assert c.mail("sender@example.net") == MAIL_OK
        if where == "data":
            assert c.rcpt(user) == RCPT_OK
            assert c.cmd("DATA").code == 354
            c.send(b"Subject: half a message\r\n\r\nbody")
        if where == "bdat":
            assert c.rcpt(user) == RCPT_OK
            c.send(b"BDAT 1000 LAST\r\nSubject: half a chunk\r\n\r\nbody")
        t0 = time.monotonic()
        assert c.reply() == IDLE, c.transcript()
        took = time.monotonic() - t0
        assert c.wait_closed(5) == b""
    assert took >= 1.0, "closed after %.2fs, long before the 2s idle timeout" % took
    if where in ("data", "bdat"):
        assert idle.delivered(user) == [], "half a message was delivered"
    idle.assert_smtp_alive()


def test_client_that_stops_reading_is_cut(idle):
    """A client that pipelines commands and never reads the replies: once
    the server cannot write, the session is idle and smtp.idle_timeout
    (2 s) ends it (its socket is closed, whatever is left unsent)."""
    time.sleep(0.5)                     # sessions of earlier tests are gone
    base = idle.fd_count()
    c = idle.smtp_connect("smtp", rcvbuf=4096)
    try:
        c.sock.settimeout(3)
        try:
            c.sock.sendall(b"EHLO client.example.net\r\n" * 40000)
        except socket.timeout:
            pass                        # the server stopped reading: it cannot write
        assert idle.fd_count() > base
        deadline = time.monotonic() + 10
        while idle.fd_count() > base and time.monotonic() < deadline:
            time.sleep(0.2)
        assert idle.fd_count() <= base, \
            "the session of a client that stopped reading is still open after 10 s"
    finally:
        c.close()
    idle.assert_smtp_alive()


def test_activity_keeps_the_session(idle):
    with ehlo_conn(idle) as c:
        for _ in range(3):
            time.sleep(1.0)
            assert c.cmd("NOOP") == OK, c.transcript()
        c.quit()


# ---------------------------------------------------------------- shutdown

def test_sigterm_says_421_to_open_sessions(server_factory):
    import signal
    srv = server_factory(SERVER_CONFIG)
    c1 = ehlo_conn(srv)
    c2 = ehlo_conn(srv, "submissions")
    try:
        assert c1.mail("sender@example.net") == MAIL_OK
        srv.proc.send_signal(signal.SIGTERM)
        for c in (c1, c2):
            c.sock.settimeout(25)       # the server may give sessions a grace period
            assert c.reply() == (421, [b"4.3.2 " + H + b" Service shutting down"]), \
                c.transcript()
            assert c.wait_closed(5) == b""
    finally:
        c1.close()
        c2.close()
    rc = srv.proc.wait(20)
    srv.proc = None                     # stopped here, not by the fixture
    assert rc == 0, "exit code %r after SIGTERM" % rc
