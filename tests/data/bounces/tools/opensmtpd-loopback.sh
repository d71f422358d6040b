#!/usr/bin/env bash
# Makes the `opensmtpd-loopback-*.eml` samples of this corpus: Debian's OpenSMTPD, on
# loopback only, relays mail to a second listener of its own that stands for the remote
# receiver and refuses it; the notices written to the local sender's mailbox are kept as they
# were delivered (without the mbox `From ` line). Run as root on a scratch machine (it
# replaces /etc/smtpd.conf and adds local users); nothing leaves 127.0.0.1 and no name is
# looked up in DNS (every relay names 127.0.0.1). The tests never run this script: they read
# the committed samples.
set -euo pipefail
out="${1:?usage: opensmtpd-loopback.sh OUTPUT_DIR}"
mkdir -p "$out"
command -v smtpd >/dev/null || { echo "opensmtpd is not installed (apt-get install opensmtpd)" >&2; exit 1; }

[ -s /run/smtpd.pid ] && kill "$(cat /run/smtpd.pid)" 2>/dev/null || true; sleep 1
for user in sender; do id "$user" >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin "$user"; done
grep -q '^forwarder:' /etc/aliases || echo 'forwarder: gone-to@remote.example.test' >> /etc/aliases
: > /var/mail/sender && chown sender:mail /var/mail/sender

cat > /etc/smtpd.conf <<'CONF'
table aliases file:/etc/aliases
listen on 127.0.0.1 port 25 hostname mail.example.test
# The "remote receiver": its own name, its own users, and it relays for nobody.
listen on 127.0.0.1 port 2526 tag GATE hostname gate.example.test
queue ttl 1m
action "local" mbox alias <aliases>
action "gate" relay host smtp://127.0.0.1:2526 helo mail.example.test
action "unreachable" relay host smtp://127.0.0.1:2599 helo mail.example.test
match tag GATE from any for domain "remote.example.test" action "local"
match !tag GATE from local for domain "mail.example.test" action "local"
match !tag GATE from local for domain "unreachable.example.test" action "unreachable"
match !tag GATE from local for any action "gate"
CONF
smtpd -n
smtpd
sleep 2
send() {
    local subject="$1"; shift
    printf 'From: sender@mail.example.test\nTo: %s\nSubject: %s\nMessage-ID: <%s@mail.example.test>\n\nA test message for the bounce corpus.\n' \
        "$*" "$subject" "$(date +%s%N)" | /usr/sbin/sendmail -f sender@mail.example.test "$@"
}
send 'unknown user at the remote' nobody-here@remote.example.test
send 'relay refused' someone@relay.example.test
send 'forwarded to an unknown user' forwarder@mail.example.test
send 'several recipients' missing-one@remote.example.test missing-two@remote.example.test
send 'nobody listening' someone@unreachable.example.test
# One notice per message; the unreachable host's comes once the queue's one-minute lifetime
# has ended and the scheduler looks again (a few minutes), so wait for all five, bounded.
for _ in $(seq 60); do
    [ "$(grep -c '^From ' /var/mail/sender)" -ge 5 ] && break
    sleep 10
done
kill "$(cat /run/smtpd.pid)"

python3 - "$out" <<'PY'
import mailbox, sys
box = mailbox.mbox("/var/mail/sender")
for n, key in enumerate(box.keys(), 1):
    with open(f"{sys.argv[1]}/opensmtpd-loopback-{n:02d}.eml", "wb") as f:
        f.write(box.get_bytes(key, from_=False))
PY
ls -l "$out"
