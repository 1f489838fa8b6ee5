#!/usr/bin/python3
"""dns_server.py — a small authoritative DNS server (UDP) for tests, on the
Python standard library, that answers from a table and can misbehave.

    python3 tests/dns_server.py PORT TABLE      (PORT 0: pick a free one)

It binds 127.0.0.1:PORT, prints the port on a line of its own, and serves
until killed (or until the process that started it is gone).

TABLE has one entry a line ('#' starts a comment):

    NAME TYPE DATA        a record: TYPE is A, AAAA, MX ("PREF TARGET", a
                          TARGET of "." is a null MX), CNAME, NS or TXT
    @servfail NAME [TYPE] answer SERVFAIL (for that type only, if given)
    @refused NAME [TYPE]  answer REFUSED
    @drop NAME [TYPE]     never answer
    @delay MS NAME [TYPE] answer MS milliseconds late

Answers follow CNAMEs in the table as a recursive resolver would, putting
each CNAME in the answer and stopping where the chain comes back on itself
(so a CNAME loop comes back as NOERROR holding only the loop). A name with
no record of any type is NXDOMAIN; a name with records but none of the type
asked is NOERROR with an empty answer (NODATA).
"""
import os
import socket
import struct
import sys
import threading

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "MX": 15, "TXT": 16, "AAAA": 28}
RCODE = {"servfail": 2, "refused": 5}


def encode_name(name):
    name = name.rstrip(".")
    if not name:
        return b"\0"
    out = b""
    for label in name.split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError("bad label in %r" % name)
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def rdata(rtype, fields):
    if rtype == "A":
        return socket.inet_pton(socket.AF_INET, fields[0])
    if rtype == "AAAA":
        return socket.inet_pton(socket.AF_INET6, fields[0])
    if rtype == "MX":
        return struct.pack("!H", int(fields[0])) + encode_name(fields[1])
    if rtype in ("CNAME", "NS"):
        return encode_name(fields[0])
    if rtype == "TXT":
        raw = " ".join(fields).encode()[:255]
        return bytes([len(raw)]) + raw
    raise ValueError("unknown type " + rtype)


def norm(name):
    return name.lower().rstrip(".")


class Table:
    def __init__(self, path):
        self.records = {}   # (name, type number) -> [rdata bytes]
        self.cnames = {}    # name -> target
        self.names = set()
        self.actions = {}   # (name, type number or None) -> (action, ms)
        with open(path) as f:
            for line in f:
                words = line.split("#", 1)[0].split()
                if not words:
                    continue
                if words[0].startswith("@"):
                    action = words[0][1:]
                    ms = 0
                    if action == "delay":
                        ms = int(words[1])
                        words = words[1:]
                    if action not in ("servfail", "refused", "drop", "delay"):
                        raise ValueError("unknown action " + action)
                    qtype = TYPES[words[2].upper()] if len(words) > 2 else None
                    self.actions[(norm(words[1]), qtype)] = (action, ms)
                    continue
                name, rtype, fields = norm(words[0]), words[1].upper(), words[2:]
                self.names.add(name)
                if rtype == "CNAME":
                    self.cnames[name] = norm(fields[0])
                self.records.setdefault((name, TYPES[rtype]), []).append(
                    rdata(rtype, fields))

    def action(self, name, qtype):
        return self.actions.get((name, qtype)) or self.actions.get((name, None))

    def answer(self, qname, qtype):
        """(rcode, [(owner, type, rdata)])"""
        rrs = []
        cur, seen = qname, set()
        while cur in self.cnames and qtype != TYPES["CNAME"] and cur not in seen:
            seen.add(cur)
            for rd in self.records[(cur, TYPES["CNAME"])]:
                rrs.append((cur, TYPES["CNAME"], rd))
            cur = self.cnames[cur]
        if cur not in seen:
            for rd in self.records.get((cur, qtype), []):
                rrs.append((cur, qtype, rd))
        return (0 if cur in self.names else 3), rrs


def parse_query(data):
    qid, flags, qdcount = struct.unpack("!HHH", data[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    pos, labels = 12, []
    while True:
        n = data[pos]
        if n == 0 or n & 0xC0:
            break
        labels.append(data[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    pos += 1
    qtype, qclass = struct.unpack("!HH", data[pos:pos + 4])
    question = data[12:pos + 4]
    return qid, flags, ".".join(labels), qtype, question


def build_reply(qid, flags, question, rcode, rrs):
    out_flags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode
    msg = struct.pack("!6H", qid, out_flags, 1, len(rrs), 0, 0) + question
    for owner, rtype, rd in rrs:
        msg += encode_name(owner) + struct.pack("!HHIH", rtype, 1, 60, len(rd)) + rd
    return msg


def main():
    port, table = int(sys.argv[1]), Table(sys.argv[2])
    parent = os.getppid()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    sock.settimeout(0.5)
    print(sock.getsockname()[1], flush=True)
    while os.getppid() == parent:
        try:
            data, peer = sock.recvfrom(4096)
        except socket.timeout:
            continue
        try:
            q = parse_query(data)
        except (IndexError, struct.error):
            continue
        if q is None:
            continue
        qid, flags, qname, qtype, question = q
        act = table.action(norm(qname), qtype)
        if act and act[0] == "drop":
            continue
        if act and act[0] in RCODE:
            reply = build_reply(qid, flags, question, RCODE[act[0]], [])
        else:
            rcode, rrs = table.answer(norm(qname), qtype)
            reply = build_reply(qid, flags, question, rcode, rrs)
        if act and act[0] == "delay":
            threading.Timer(act[1] / 1000.0, sock.sendto, (reply, peer)).start()
        else:
            sock.sendto(reply, peer)


if __name__ == "__main__":
    main()
