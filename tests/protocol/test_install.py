"""test_install.py — `make install` puts the binary and the docs under
DESTDIR/PREFIX, and the installed binary runs."""

import subprocess

from pobox_harness import ROOT, VERSION


def test_make_install_with_prefix(tmp_path):
    dest = tmp_path / "root"
    r = subprocess.run(["make", "-s", "install", "DESTDIR=%s" % dest, "PREFIX=/opt/pb"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    binary = dest / "opt/pb/bin/pobox"
    assert binary.exists()
    assert (dest / "opt/pb/share/doc/pobox/pobox.conf.example").exists()
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                         timeout=10)
    assert out.returncode == 0
    assert out.stdout.strip() == "pobox %s" % VERSION
