#!/usr/bin/env bash
# Makes the `dma-loopback-*.eml` samples of this corpus: Debian's dma (the DragonFly Mail
# Agent), which writes its notices as plain text without a delivery-status part, sends every
# remote message to loopback-receiver.py on 127.0.0.1:2525 as its smarthost and delivers
# local mail itself; the notices it writes to the local sender's mailbox are kept as
# delivered (without the mbox `From ` line). Run as root on a scratch machine: it writes
# /etc/dma/dma.conf and its own aliases file. Nothing leaves 127.0.0.1 (the smarthost is the
# only remote host dma talks to). dma retries a temporary failure for days with no setting
# to shorten that, so it makes no delay or expiry notices. The tests never run this
# script: they read the committed samples.
set -euo pipefail
out="$(realpath -m "${1:?usage: dma-loopback.sh OUTPUT_DIR}")"
tools="$(dirname "$(realpath "$0")")"
command -v dma >/dev/null || { echo "dma is not installed (apt-get install dma)" >&2; exit 1; }
mkdir -p "$out"
for user in sender fulluser; do id "$user" >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin "$user"; done

mkdir -p /var/lib/loopback-dma
cat > /var/lib/loopback-dma/aliases <<'ALIASES'
forwarder: nobody-here-forwarded@remote.example.test
team: fulluser, missing-member@remote.example.test
ALIASES
cat > /etc/dma/dma.conf <<'CONF'
SMARTHOST 127.0.0.1
PORT 2525
MAILNAME mail.example.test
ALIASES /var/lib/loopback-dma/aliases
CONF
rm -f /var/spool/dma/* 2>/dev/null || true

python3 "$tools/loopback-receiver.py" 2525 --size-limit 20000 --lifetime 300 &
receiver=$!
trap 'kill $receiver 2>/dev/null || true' EXIT
: > /var/mail/sender && chown sender:mail /var/mail/sender && chmod 660 /var/mail/sender
sleep 1

send() {
    local subject="$1"; shift
    printf 'From: sender@mail.example.test\nTo: %s\nSubject: %s\nMessage-ID: <%s@mail.example.test>\n\nA test message for the bounce corpus.\n' \
        "$*" "$subject" "$(date +%s%N)" | dma -f sender@mail.example.test "$@" || true
    sleep 3
}
send 'unknown local user' nosuchuser@mail.example.test
send 'unknown user at the remote' nobody-here@remote.example.test
send 'forwarded to an unknown user' forwarder@mail.example.test
send 'several recipients' missing-one@remote.example.test missing-two@remote.example.test
send 'alias of a local user and an unknown remote user' team@mail.example.test
send 'full mailbox at the remote' full-mailbox@remote.example.test
{
    printf 'From: sender@mail.example.test\nTo: big@remote.example.test\nSubject: too large for the remote\nMessage-ID: <%s@mail.example.test>\n\n' "$(date +%s%N)"
    head -c 30000 /dev/zero | tr '\0' 'y' | fold -w 76
} | dma -f sender@mail.example.test big@remote.example.test || true
for _ in $(seq 12); do
    [ "$(grep -c '^From ' /var/mail/sender)" -ge 7 ] && break
    sleep 5
done

python3 - "$out" <<'PY'
import mailbox, sys
box = mailbox.mbox("/var/mail/sender")
for n, key in enumerate(box.keys(), 1):
    with open(f"{sys.argv[1]}/dma-loopback-{n:02d}.eml", "wb") as f:
        f.write(box.get_bytes(key, from_=False))
PY
ls -l "$out"
