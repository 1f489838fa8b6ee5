"""dataset.py — the benchmark's users and Maildirs, the same for every server.

Dataset(root, quick).build() generates once (a marker root/done records the
parameters; a second build with the same ones does nothing):

  root/cert.pem, key.pem   one self-signed ECDSA P-256 pair for every server
  root/hash                SHA512-CRYPT of the password (fixed salt)
  root/template/bench.test/LOCALPART/{cur,new,tmp}
                           one Maildir per user, messages in new/
  root/users-GROUP.txt     "ADDRESS PASSWORD" lines for the load generator

Every user has the password "bench-pw-1" and the same hash. Messages are
deterministic (random.Random seeded per group and user), LF line ends,
RFC 5322 headers (Received x2-3, Date, From, To, Subject, Message-ID,
MIME). File names are TIME.M<n>P<user>.bench, TIME increasing by one per
message so every server numbers them in the same order.

Groups (users x messages; quick halves the polling users, has 1,000 idle
users and no growth100k; tiny is a few users with a few messages for the
self-test):
  poll1k  4 x 1,000 of ~4 KB        poll10k  4 x 10,000 of ~4 KB
  dl200   4 x 200, size mix: 60% 2-10 KB text, 30% 10-100 KB with an
          image, 8% 100 KB-1 MB and 2% 1-5 MB base64 attachments
  big50   1 x one message of exactly 50,000,000 octets
  growth100, growth1k, growth10k, growth100k  1 user each, ~2 KB messages
  idle    10,000 users with empty Maildirs
  smtp    16 users with empty Maildirs
(tiny: 1-2 users with 1-8 messages per group, big50 of 2,000,000 octets,
200 idle users, 4 smtp users.)

install_maildirs(dest) makes dest/bench.test/... a hard-linked copy
(cp -al) of the template: the servers only rename files (new/ -> cur/,
flags) and add index files of their own, never rewrite a message. (On
another file system than the template it copies, much slower.)"""

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from random import Random

DOMAIN = "bench.test"
PASSWORD = "bench-pw-1"
SALT = "poboxbench2024ab"           # 16 characters: SHA512-CRYPT's maximum
BASE_TIME = 1700000000
FORMAT = 3                          # bump when the generated content changes

KB = 1000


def _spec(quick, tiny):
    """{group: (users, messages per user, kind)}, in build order."""
    if tiny:
        return {
            "poll1k": (2, 5, "poll"), "poll10k": (2, 8, "poll"),
            "dl200": (2, 6, "mix"), "big50": (1, 1, "big"),
            "growth100": (1, 3, "growth"), "growth1k": (1, 4, "growth"),
            "growth10k": (1, 5, "growth"),
            "idle": (200, 0, "empty"), "smtp": (4, 0, "empty"),
        }
    polls = 2 if quick else 4
    spec = {
        "poll1k": (polls, 1000, "poll"), "poll10k": (polls, 10000, "poll"),
        "dl200": (4, 200, "mix"), "big50": (1, 1, "big"),
        "growth100": (1, 100, "growth"), "growth1k": (1, 1000, "growth"),
        "growth10k": (1, 10000, "growth"),
    }
    if not quick:
        spec["growth100k"] = (1, 100000, "growth")
    spec["idle"] = (1000 if quick else 10000, 0, "empty")
    spec["smtp"] = (16, 0, "empty")
    return spec


# --- text material ----------------------------------------------------------

WORDS = """the of and to in is that for it as was with be by on not he this are
or his from at which but have an they you were her she there would their we him
been has when who will more no if out so said what up its about into than them
can only other new some could time these two may then do first any my now such
like our over man me even most made after also did many before must through
back years where much your way well down should because each just those people
how too little state good very make world still own see men work long get here
between both life being under never day same another know while last might us
great old year off come since against go came right used take three meeting
report budget server mailbox delivery queue schedule project review release
quarter customer invoice shipment contract draft agenda minutes question answer
update summary attached please thanks regards tomorrow monday friday weekend
office holiday travel hotel flight ticket order payment account balance
statement reminder deadline proposal version change request issue ticket fix
test build deploy backup restore storage network latency throughput capacity
""".split()

FIRST = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi",
         "Ivan", "Judy", "Mallory", "Niaj", "Olivia", "Peggy", "Rupert", "Sybil",
         "Trent", "Victor", "Walter", "Yvonne"]
LAST = ["Smith", "Jones", "Garcia", "Miller", "Davis", "Martin", "Bernard",
        "Dubois", "Rossi", "Novak", "Kowalski", "Nielsen", "Tanaka", "Silva"]
DOMAINS = ["example.net", "example.com", "example.org", "mail.example.net",
           "lists.example.org", "corp.example.com"]
MIMETYPES = [("application/pdf", "pdf"), ("image/jpeg", "jpg"), ("image/png", "png"),
             ("application/zip", "zip"),
             ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx")]


class _Material:
    """Shared pools of prose lines and subjects (built once per build)."""

    def __init__(self, seed):
        rng = Random(seed)
        lines = []
        for _ in range(4000):
            n = rng.randint(40, 72)
            words, length = [], 0
            while length < n:
                w = rng.choice(WORDS)
                words.append(w)
                length += len(w) + 1
            line = " ".join(words)
            lines.append(line[0].upper() + line[1:] + ("." if rng.random() < 0.3 else ""))
            if rng.random() < 0.12:
                lines.append("")
        self.lines = lines
        self.avg = sum(len(x) + 1 for x in lines) / len(lines)
        self.subjects = []
        for _ in range(500):
            s = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8)))
            self.subjects.append(rng.choice(["", "", "Re: ", "Fwd: ", "RE: "]) + s.capitalize())

    def fill(self, rng, n):
        """Exactly n octets of prose (n >= 1), LF line ends, ending with LF."""
        if n <= 0:
            return b""
        k = int(n / self.avg) + 3
        text = "\n".join(rng.choices(self.lines, k=k))
        while len(text) < n:
            text += "\n" + "\n".join(rng.choices(self.lines, k=k))
        text = text[:n - 1]
        if text.endswith(" "):
            text = text[:-1] + "."
        return (text + "\n").encode("ascii")


def _date(ts):
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(ts))


def _headers(rng, mat, group, address, n, ts, extra=""):
    first, last = rng.choice(FIRST), rng.choice(LAST)
    sdom = rng.choice(DOMAINS)
    sender = "%s.%s@%s" % (first.lower(), last.lower(), sdom)
    mid = "<%d.%s.%x@%s>" % (ts, group, rng.getrandbits(48), sdom)
    hops = []
    t = ts
    for h in range(rng.randint(2, 3)):
        ip = "192.0.2.%d" % rng.randint(1, 254) if h else "198.51.100.%d" % rng.randint(1, 254)
        host = "mx%d.%s" % (rng.randint(1, 9), sdom) if h else "out%d.%s" % (rng.randint(1, 9), sdom)
        by = "mail.bench.test" if h == 0 else "relay%d.%s" % (h, sdom)
        hops.append("Received: from %s (%s [%s])\n\tby %s with ESMTPS id %012X\n"
                    "\tfor <%s>; %s\n" % (host, host, ip, by, rng.getrandbits(48),
                                          address, _date(t)))
        t -= rng.randint(1, 30)
    return ("Return-Path: <%s>\n" % sender + "".join(hops)
            + "Date: %s\n" % _date(t)
            + "From: %s %s <%s>\n" % (first, last, sender)
            + "To: <%s>\n" % address
            + "Subject: %s\n" % rng.choice(mat.subjects)
            + "Message-ID: %s\n" % mid
            + "MIME-Version: 1.0\n" + extra).encode("ascii")


def _text_message(rng, mat, group, address, n, ts, size):
    head = _headers(rng, mat, group, address, n, ts,
                    "Content-Type: text/plain; charset=us-ascii\n"
                    "Content-Transfer-Encoding: 7bit\n\n")
    return head + mat.fill(rng, max(1, size - len(head)))


def _b64len(raw):
    chars = 4 * ((raw + 2) // 3)
    return chars + (chars + 75) // 76 if raw else 0


def _attachment_message(rng, mat, group, address, n, ts, size):
    """multipart/mixed: a text part and one base64 attachment, exactly size
    octets (the text part takes up the difference)."""
    boundary = "=_bench_%016x" % rng.getrandbits(64)
    head = _headers(rng, mat, group, address, n, ts,
                    "Content-Type: multipart/mixed; boundary=\"%s\"\n\n" % boundary)
    mime, ext = rng.choice(MIMETYPES)
    pre = ("This is a multi-part message in MIME format.\n\n--%s\n"
           "Content-Type: text/plain; charset=us-ascii\n"
           "Content-Transfer-Encoding: 7bit\n\n" % boundary).encode("ascii")
    mid = ("\n--%s\nContent-Type: %s; name=\"file%d.%s\"\n"
           "Content-Disposition: attachment; filename=\"file%d.%s\"\n"
           "Content-Transfer-Encoding: base64\n\n" % (boundary, mime, n, ext, n, ext)).encode("ascii")
    end = ("\n--%s--\n" % boundary).encode("ascii")
    fixed = len(head) + len(pre) + len(mid) + len(end)
    text_min = 300 + rng.randint(0, 1500)
    room = max(0, size - fixed - text_min)
    raw = room * 57 // 77
    while raw > 0 and _b64len(raw) > room:
        raw -= 1
    att = base64.encodebytes(rng.randbytes(raw)).rstrip(b"\n") if raw else b""
    text = mat.fill(rng, max(1, size - fixed - len(att)))
    return head + pre + text + mid + att + end


class Dataset:
    def __init__(self, root, quick=False, tiny=False):
        self.root = Path(root).resolve()
        self.quick = bool(quick)
        self.tiny = bool(tiny)
        self.domain = DOMAIN
        self.password = PASSWORD
        self.spec = _spec(self.quick, self.tiny)
        self.template = self.root / "template"
        self.cert = self.root / "cert.pem"
        self.key = self.root / "key.pem"
        self._hash = None

    # --- parameters ------------------------------------------------------------
    def params(self):
        return {"format": FORMAT, "quick": self.quick, "tiny": self.tiny,
                "spec": {g: list(v) for g, v in self.spec.items()}}

    def groups(self):
        return list(self.spec)

    def message_count(self, group):
        """Messages in each maildrop of the group's template."""
        return self.spec[group][1]

    def localparts(self, group):
        users = self.spec[group][0]
        return ["%s-%05d" % (group, i) for i in range(1, users + 1)]

    def users(self, group):
        return ["%s@%s" % (lp, DOMAIN) for lp in self.localparts(group)]

    def all_users(self):
        out = []
        for g in self.spec:
            out += self.users(g)
        return out

    @property
    def hash(self):
        """"{SHA512-CRYPT}$6$..." of the password: what Dovecot's
        passwd-file and pobox's users file both take."""
        if self._hash is None:
            f = self.root / "hash"
            if f.exists():
                self._hash = f.read_text().strip()
            else:
                r = subprocess.run(["openssl", "passwd", "-6", "-salt", SALT, PASSWORD],
                                   capture_output=True, text=True, check=True)
                self._hash = "{SHA512-CRYPT}" + r.stdout.strip()
        return self._hash

    def users_file(self, group):
        """root/users-GROUP.txt with "ADDRESS PASSWORD" lines."""
        p = self.root / ("users-%s.txt" % group)
        want = "".join("%s %s\n" % (a, PASSWORD) for a in self.users(group))
        if not p.exists() or p.read_text() != want:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(".tmp")
            tmp.write_text(want)
            os.replace(tmp, p)
        return p

    # --- generation ------------------------------------------------------------
    def is_built(self):
        try:
            return json.loads((self.root / "done").read_text()) == self.params()
        except (OSError, ValueError):
            return False

    def build(self, log=None):
        """Generates everything unless root/done says it is there with the
        same parameters. Returns True when it generated."""
        if self.is_built():
            return False
        say = log or (lambda msg: None)
        t0 = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        (self.root / "done").unlink(missing_ok=True)
        self._make_cert()
        self._hash = None
        (self.root / "hash").unlink(missing_ok=True)
        h = self.hash
        (self.root / "hash").write_text(h + "\n")
        work = self.root / "template.new"
        for d in (work, self.template):
            if d.exists():
                shutil.rmtree(d)
        dom = work / DOMAIN
        dom.mkdir(parents=True)
        mat = _Material("pobox-bench-material-%d" % FORMAT)
        for group, (nusers, nmsgs, kind) in self.spec.items():
            t = time.monotonic()
            for ui, lp in enumerate(self.localparts(group), 1):
                self._make_maildrop(dom / lp, mat, group, "%s@%s" % (lp, DOMAIN),
                                    ui, nmsgs, kind)
            self.users_file(group)
            say("dataset: %s: %d users x %d messages (%.1f s)"
                % (group, nusers, nmsgs, time.monotonic() - t))
        os.rename(work, self.template)
        (self.root / "done").write_text(json.dumps(self.params()))
        say("dataset: built in %.1f s" % (time.monotonic() - t0))
        return True

    def _make_cert(self):
        if self.cert.exists() and self.key.exists():
            return
        r = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(self.key), "-out", str(self.cert), "-days", "3650",
             "-subj", "/CN=%s" % DOMAIN, "-addext", "subjectAltName=DNS:%s,IP:127.0.0.1" % DOMAIN],
            capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("openssl req failed: %s" % r.stderr)
        # a throw-away key in a private benchmark directory: readable by the
        # dovecot and postfix accounts without group games
        os.chmod(self.cert, 0o644)
        os.chmod(self.key, 0o644)

    def _make_maildrop(self, udir, mat, group, address, ui, nmsgs, kind):
        for sub in ("cur", "new", "tmp"):
            (udir / sub).mkdir(parents=True)
        if not nmsgs:
            return
        rng = Random("%s/%s/%d" % (group, address, FORMAT))
        sizes = self._sizes(rng, kind, nmsgs)
        newdir = str(udir / "new")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        for n in range(nmsgs):
            ts = BASE_TIME + n
            size, att = sizes[n]
            if att:
                data = _attachment_message(rng, mat, group, address, n, ts, size)
            else:
                data = _text_message(rng, mat, group, address, n, ts, size)
            fd = os.open("%s/%d.M%dP%d.bench" % (newdir, ts, n, ui), flags, 0o644)
            try:
                view = memoryview(data)
                while view:
                    w = os.write(fd, view)
                    view = view[w:]
            finally:
                os.close(fd)

    def _sizes(self, rng, kind, nmsgs):
        """[(size, with_attachment)] for one maildrop."""
        if kind == "poll":
            return [(rng.randint(3500, 4600), False) for _ in range(nmsgs)]
        if kind == "growth":
            return [(rng.randint(1800, 2300), False) for _ in range(nmsgs)]
        if kind == "big":
            return [(50 * 10**6 if not self.tiny else 2 * 10**6, True)]
        # mix: exact proportions per maildrop, in a shuffled order
        def logu(lo, hi):
            return int(lo * (hi / lo) ** rng.random())
        n2 = round(nmsgs * 0.02) or (1 if nmsgs >= 5 else 0)
        n8 = round(nmsgs * 0.08) or (1 if nmsgs >= 4 else 0)
        n30 = round(nmsgs * 0.30)
        n60 = nmsgs - n2 - n8 - n30
        out = ([(logu(2 * KB, 10 * KB), False) for _ in range(n60)]
               + [(logu(10 * KB, 100 * KB), True) for _ in range(n30)]
               + [(logu(100 * KB, 1000 * KB), True) for _ in range(n8)]
               + [(logu(1000 * KB, 5000 * KB), True) for _ in range(n2)])
        rng.shuffle(out)
        return out

    # --- use -------------------------------------------------------------------------
    def install_maildirs(self, dest, groups=None):
        """dest/bench.test/LOCALPART/... as hard links of the template (all
        groups, or the named ones); replaces what dest/bench.test held.
        When dest is on another file system than the template, the files
        are copied (cp -a) instead. Returns "hardlink" or "copy"."""
        if not self.is_built():
            self.build()
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / DOMAIN
        if target.exists():
            shutil.rmtree(target)
        src = self.template / DOMAIN
        how = "hardlink" if os.stat(dest).st_dev == os.stat(src).st_dev else "copy"
        flag = "-al" if how == "hardlink" else "-a"
        if groups is None:
            subprocess.run(["cp", flag, str(src), str(target)], check=True)
            return how
        target.mkdir()
        names = []
        for g in groups:
            names += [str(src / lp) for lp in self.localparts(g)]
        for i in range(0, len(names), 2000):
            subprocess.run(["cp", flag] + names[i:i + 2000] + [str(target)], check=True)
        return how

    def count_messages(self, dest, group):
        """Files in new/ and cur/ of the group's maildrops under dest."""
        total = 0
        base = Path(dest) / DOMAIN
        for lp in self.localparts(group):
            for sub in ("new", "cur"):
                try:
                    with os.scandir(base / lp / sub) as it:
                        total += sum(1 for e in it if e.is_file(follow_symlinks=False))
                except FileNotFoundError:
                    pass
        return total

    def template_bytes(self, group):
        """Octets of one maildrop per user of the group (for reports)."""
        out = []
        for lp in self.localparts(group):
            d = self.template / DOMAIN / lp / "new"
            out.append(sum(e.stat().st_size for e in os.scandir(d)))
        return out
