"""test_smtp_disk_full.py — a full disk (issue: "452 4.3.1, nothing
half-delivered"): the server's data_dir is a small tmpfs filled up by a
filler file; a message that does not fit gets 452 4.3.1 and leaves nothing
in the Maildir or the queue; once space is back the same message goes
through. Needs root (mount); skipped otherwise."""

import os
import subprocess

import pytest

from pobox_harness import Server


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    d = tmp_path_factory.mktemp("disk_full")
    data = d / "srv" / "data"
    data.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(data)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % r.stderr.decode().strip())
    srv = Server(d / "srv", {"auth": {"plaintext_without_tls": "yes", "failure_delay": "0"}})
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        subprocess.run(["umount", str(data)], capture_output=True)


def fill(path, leave):
    """Fills the file system of path up to `leave` free octets."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    filler = path / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def message(size):
    line = b"x" * 76 + b"\r\n"
    return b"Subject: big\r\n\r\n" + line * (size // len(line))


def send(srv, user, msg):
    c = srv.smtp_connect("smtp")
    try:
        assert c.greeting.code == 220
        assert c.ehlo("client.example.net").code == 250
        assert c.mail("sender@example.net").code == 250
        assert c.rcpt(user).code == 250
        assert c.cmd("DATA").code == 354
        c.send(msg + b".\r\n")
        return c.reply()
    finally:
        c.close()


def test_full_disk_is_452_431_and_nothing_half_delivered(full):
    user, _ = full.add_user()
    filler = fill(full.data_dir, 64 * 1024)
    try:
        r = send(full, user, message(600 * 1024))
        assert r.code == 452 and r.enhanced == "4.3.1", r
        assert full.delivered(user) == []
        assert full.tmp_files(user) == []
        assert full.queue_count() == (0, 0)
    finally:
        filler.unlink()
    r = send(full, user, message(600 * 1024))
    assert r.code == 250, r
    assert len(full.delivered(user)) == 1
    full.assert_smtp_alive()
