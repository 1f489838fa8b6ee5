#!/usr/bin/python3
"""selftest.py — proves the benchmark's server adapters work on this machine.

    python3 bench/servers/selftest.py [--quick] [--pobox PATH] [--keep]

Builds a tiny dataset in a temporary folder, then starts each server in
turn on its own ports and checks with poplib/smtplib:
  pobox    POP3 127.0.0.1:22110, POP3S 22995, submission 22587
  Dovecot  POP3 23110, POP3S 23995
  Postfix  submission 24587 (SASL by its private Dovecot auth)
- POP3 USER/PASS + STAT gives the template's message count, the same on
  pobox and Dovecot for the same user; POP3S (implicit TLS) too;
- submission with STARTTLS + AUTH PLAIN delivers a 10 KB message into the
  recipient's Maildir (count_messages + 1 after drain()), on pobox and
  Postfix;
- after stop() no process of the server is left.
Without --quick also: every message of a dl200 user and the big50 message
RETRieved from both POP3 servers equals the template (LF -> CRLF, dot
stuffing undone), the UIDL lists of the two servers agree, 200 POP3S
sessions held at once answer NOOP, and a second stop() is harmless.

The pobox binary defaults to build-sv/pobox (built with `make BUILD=build-sv`
when missing). Exit status 0 when every check passed."""

import argparse
import asyncio
import os
import poplib
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))

from servers.base import ServerUnavailable, alive, proc_table  # noqa: E402
from servers.dataset import Dataset  # noqa: E402
from servers.dovecot import DovecotServer  # noqa: E402
from servers.pobox import PoboxServer  # noqa: E402
from servers.postfix import PostfixServer  # noqa: E402

PORTS = {
    "pobox": {"pop3": 22110, "pop3s": 22995, "submission": 22587},
    "dovecot": {"pop3": 23110, "pop3s": 23995},
    "postfix": {"submission": 24587},
}

poplib._MAXLINE = 1 << 20


def tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Checks:
    def __init__(self):
        self.failed = []
        self.passed = 0

    def ok(self, cond, what, detail=""):
        if cond:
            self.passed += 1
            print("  ok    %s" % what)
        else:
            self.failed.append(what)
            print("  FAIL  %s%s" % (what, (": " + detail) if detail else ""))
        return cond


def pop3_session(port, user, password, tls=False):
    if tls:
        return_ = poplib.POP3_SSL("127.0.0.1", port, context=tls_ctx(), timeout=30)
    else:
        return_ = poplib.POP3("127.0.0.1", port, timeout=30)
    return_.user(user)
    return_.pass_(password)
    return return_


def pop3_stat(port, user, password, tls=False):
    p = pop3_session(port, user, password, tls)
    try:
        return p.stat()
    finally:
        p.quit()


def pop3_all(port, user, password):
    """(UIDL list, [message bytes with CRLF]) of the maildrop."""
    p = pop3_session(port, user, password)
    try:
        uidl = [ln.split()[1] for ln in p.uidl()[1]]
        msgs = []
        for i in range(1, len(uidl) + 1):
            _, lines, _ = p.retr(i)
            msgs.append(b"\r\n".join(lines) + b"\r\n")
        return uidl, msgs
    finally:
        p.quit()


def template_messages(ds, address):
    local = address.split("@")[0]
    d = ds.template / ds.domain / local / "new"
    names = sorted(os.listdir(d), key=lambda n: (int(n.split(".")[0]), n))
    return names, [(d / n).read_bytes().replace(b"\n", b"\r\n") for n in names]


def message_10k(sender, rcpt, token):
    head = ("From: <%s>\r\nTo: <%s>\r\nSubject: selftest %s\r\n"
            "Message-ID: <%s@bench.test>\r\nDate: %s\r\n\r\n"
            % (sender, rcpt, token, token,
               time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())))
    line = "The quick brown fox jumps over the lazy dog. %s 0123456789\r\n" % token
    body = line * (10000 // len(line) + 1)
    return (head + body).encode("ascii")


def submit(port, user, password, rcpt, msg):
    c = smtplib.SMTP("127.0.0.1", port, timeout=60)
    try:
        c.ehlo("selftest.bench.test")
        c.starttls(context=tls_ctx())
        c.ehlo("selftest.bench.test")
        c.user, c.password = user, password
        code, resp = c.auth("PLAIN", c.auth_plain)
        refused = c.sendmail(user, [rcpt], msg)
        return code, refused
    finally:
        try:
            c.quit()
        except smtplib.SMTPException:
            pass


def find_token(ds, root, address, token):
    local = address.split("@")[0]
    for sub in ("new", "cur"):
        d = Path(root) / ds.domain / local / sub
        if d.is_dir():
            for n in os.listdir(d):
                if token.encode() in (d / n).read_bytes():
                    return True
    return False


async def _hold(port, users, password):
    ctx = tls_ctx()
    sem = asyncio.Semaphore(32)
    held, errors = [], []

    async def one(user):
        async with sem:
            try:
                r, w = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port, ssl=ctx), 60)
                for cmd in (None, b"USER %s\r\n" % user.encode(),
                            b"PASS %s\r\n" % password.encode()):
                    if cmd:
                        w.write(cmd)
                        await w.drain()
                    line = await asyncio.wait_for(r.readline(), 60)
                    if not line.startswith(b"+OK"):
                        raise RuntimeError(line[:100])
                held.append((r, w))
            except Exception as e:      # noqa: BLE001 - reported as a count
                errors.append(repr(e))

    await asyncio.gather(*[one(u) for u in users])
    answered = 0
    for r, w in held:
        w.write(b"NOOP\r\n")
        await w.drain()
        if (await asyncio.wait_for(r.readline(), 30)).startswith(b"+OK"):
            answered += 1
    for r, w in held:
        w.write(b"QUIT\r\n")
        await w.drain()
        await asyncio.wait_for(r.readline(), 30)
        w.close()
    return len(held), answered, errors


def hold_sessions(port, users, password):
    return asyncio.run(_hold(port, users, password))


def check_stopped(ck, srv, pids_before):
    srv.stop()
    left = [p for p in pids_before if alive(p)]
    ck.ok(not srv.pids() and not left, "%s: stop() left no process (%d were running)"
          % (srv.name, len(pids_before)),
          "left: %s" % [(p, proc_table().get(p)) for p in left])


def run(args):
    ck = Checks()
    work = Path(tempfile.mkdtemp(prefix="pobox-selftest-"))
    os.chmod(work, 0o755)
    print("work directory %s" % work)
    servers = []
    try:
        ds = Dataset(work / "data", quick=False, tiny=True)
        t = time.monotonic()
        ds.build(log=lambda m: print("  " + m))
        ck.ok(not ds.build(), "dataset: build() again does nothing (marker %s)" % (ds.root / "done"))
        print("dataset built in %.1f s: %d users, hash %s..." % (
            time.monotonic() - t, len(ds.all_users()), ds.hash[:30]))
        ck.ok(ds.hash.startswith("{SHA512-CRYPT}$6$"), "dataset: hash is {SHA512-CRYPT}$6$...")
        uf = ds.users_file("poll1k").read_text().splitlines()
        ck.ok(uf[0] == "%s %s" % (ds.users("poll1k")[0], ds.password),
              "dataset: users_file lines are 'ADDRESS PASSWORD'", uf[0])
        if not args.quick:
            big = ds.template_bytes("big50")[0]
            ck.ok(big == 2 * 10**6, "dataset: tiny big50 message is exactly 2,000,000 octets",
                  str(big))

        pobox_bin = Path(args.pobox)
        if not pobox_bin.is_absolute():
            pobox_bin = REPO / pobox_bin
        if not os.access(pobox_bin, os.X_OK) and args.pobox == "build-sv/pobox":
            print("building pobox: make BUILD=build-sv")
            subprocess.run(["make", "BUILD=build-sv"], cwd=str(REPO), check=True,
                           stdout=subprocess.DEVNULL)

        poll_user = ds.users("poll1k")[0]
        poll_count = ds.message_count("poll1k")
        poll_octets = sum(map(len, template_messages(ds, poll_user)[1]))
        dl_user = ds.users("dl200")[0]
        big_user = ds.users("big50")[0]
        sender, rcpt = ds.users("smtp")[0], ds.users("smtp")[1]
        pw = ds.password
        retrieved = {}

        for name in ("pobox", "dovecot", "postfix"):
            print("\n== %s" % name)
            wd = work / name
            wd.mkdir()
            if name == "pobox":
                srv = PoboxServer(wd, ds, PORTS[name], binary=str(pobox_bin))
            elif name == "dovecot":
                srv = DovecotServer(wd, ds, PORTS[name])
            else:
                srv = PostfixServer(wd, ds, PORTS[name])
            servers.append(srv)
            t = time.monotonic()
            ds.install_maildirs(srv.maildir_root())
            print("  maildirs installed under %s (%.2f s)" % (srv.maildir_root(),
                                                               time.monotonic() - t))
            t = time.monotonic()
            try:
                srv.start()
            except ServerUnavailable as e:
                ck.ok(False, "%s: start()" % name, str(e))
                continue
            pids = srv.pids()
            ck.ok(bool(pids), "%s: started in %.1f s, %d processes %s" % (
                name, time.monotonic() - t, len(pids), pids[:8]))
            print("  describe: %s" % srv.describe())
            try:
                if "pop3" in srv.ports:
                    st = pop3_stat(srv.ports["pop3"], poll_user, pw)
                    ck.ok(st == (poll_count, poll_octets),
                          "%s: POP3 %s STAT = %s (template: %d messages, %d octets in CRLF)"
                          % (name, poll_user, st, poll_count, poll_octets))
                    retrieved.setdefault("stat", {})[name] = st
                    st = pop3_stat(srv.ports["pop3s"], ds.users("poll10k")[0], pw, tls=True)
                    ck.ok(st[0] == ds.message_count("poll10k"),
                          "%s: POP3S %s STAT = %s" % (name, ds.users("poll10k")[0], st))
                    try:
                        pop3_stat(srv.ports["pop3"], poll_user, "wrong-password")
                        ck.ok(False, "%s: a wrong password is refused" % name)
                    except poplib.error_proto as e:
                        ck.ok(True, "%s: a wrong password is refused (%s)"
                              % (name, e.args[0][:40].decode(errors="replace")))
                    if not args.quick:
                        names, want = template_messages(ds, dl_user)
                        uidl, got = pop3_all(srv.ports["pop3"], dl_user, pw)
                        ck.ok(got == want, "%s: RETR of %d dl200 messages (%d octets) equals "
                              "the template" % (name, len(want), sum(map(len, want))))
                        retrieved.setdefault("uidl", {})[name] = uidl
                        _, bigwant = template_messages(ds, big_user)
                        _, bigot = pop3_all(srv.ports["pop3"], big_user, pw)
                        ck.ok(bigot == bigwant, "%s: RETR of the big50 message (%d octets)"
                              % (name, len(bigwant[0])))
                        users = ds.users("idle")     # distinct: a maildrop is locked
                        held, answered, errors = hold_sessions(srv.ports["pop3s"], users, pw)
                        ck.ok(held == len(users) and answered == held,
                              "%s: %d POP3S sessions held at once, %d answered NOOP"
                              % (name, held, answered), "; ".join(errors[:3]))
                if "submission" in srv.ports:
                    before = ds.count_messages(srv.maildir_root(), "smtp")
                    token = "selftest-%s-%d" % (name, os.getpid())
                    msg = message_10k(sender, rcpt, token)
                    code, refused = submit(srv.ports["submission"], sender, pw, rcpt, msg)
                    ck.ok(code == 235 and not refused, "%s: submission STARTTLS + AUTH PLAIN, "
                          "%d octets accepted (AUTH %d)" % (name, len(msg), code))
                    t = time.monotonic()
                    drained = srv.drain(60)
                    after = ds.count_messages(srv.maildir_root(), "smtp")
                    ck.ok(drained and after == before + 1 and
                          find_token(ds, srv.maildir_root(), rcpt, token),
                          "%s: delivered into %s's Maildir (count %d -> %d, drain %.2f s)"
                          % (name, rcpt, before, after, time.monotonic() - t))
                warn = srv.warnings() if hasattr(srv, "warnings") else []
                ck.ok(not warn, "%s: no warnings in its log" % name, "\n    ".join(warn[-10:]))
            except Exception as e:          # noqa: BLE001 - a check that failed
                traceback.print_exc()
                ck.ok(False, "%s: checks ran through" % name, repr(e))
            pids = srv.pids()
            check_stopped(ck, srv, pids)
            if not args.quick:
                srv.stop()
                ck.ok(True, "%s: a second stop() is harmless" % name)

        print("\n== across servers")
        stat = retrieved.get("stat", {})
        if len(stat) == 2:
            ck.ok(stat["pobox"] == stat["dovecot"], "STAT of %s: pobox %s, Dovecot %s"
                  % (poll_user, stat["pobox"], stat["dovecot"]))
        uidl = retrieved.get("uidl", {})
        if len(uidl) == 2:
            ck.ok(uidl["pobox"] == uidl["dovecot"], "UIDL lists of %s agree (%s ...)"
                  % (dl_user, b" ".join(uidl["pobox"][:2]).decode()))
    finally:
        for srv in servers:
            try:
                srv.stop()
            except Exception:           # noqa: BLE001
                traceback.print_exc()
        if args.keep:
            print("kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\n%d checks passed, %d failed%s" % (ck.passed, len(ck.failed),
                                             (": " + "; ".join(ck.failed)) if ck.failed else ""))
    return 1 if ck.failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="only the required checks")
    ap.add_argument("--pobox", default="build-sv/pobox", help="pobox binary (repo-relative)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    return run(ap.parse_args())


if __name__ == "__main__":
    sys.exit(main())
