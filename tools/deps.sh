#!/bin/sh
# deps.sh — installs the Debian packages pobox needs to build and test.
# As root it runs apt-get; otherwise it prints the exact command to run.
# Arguments name further packages (`make bench` adds the peers it compares
# pobox with: Debian's dovecot-pop3d and postfix).
set -e
PKGS="build-essential pkg-config libssl-dev libevent-dev libinih-dev libargon2-dev \
libcrypt-dev libcmocka-dev python3 python3-pytest curl fetchmail mpop openssl \
clang libclang-rt-14-dev libgsasl-dev libjwt-dev libjansson-dev libkrb5-dev \
krb5-kdc krb5-admin-server krb5-user python3-gssapi python3-jwt python3-cryptography \
libgmime-3.0-dev libc-ares-dev dnsmasq-base swaks libnet-ssleay-perl libdigest-hmac-perl \
msmtp $*"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "deps: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
    echo "deps: missing packages; run as root:" >&2
    echo "  sudo apt-get install -y$missing" >&2
    exit 1
fi
