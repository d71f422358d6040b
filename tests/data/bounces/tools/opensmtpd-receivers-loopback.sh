#!/usr/bin/env bash
# Makes the `opensmtpd-receivers-*.eml` samples of this corpus: Debian's OpenSMTPD relays
# to the scripted receiver (loopback-receiver.py), which answers with the published reply
# texts of large receivers (Gmail, Microsoft, Yahoo, Apple, GMX, Orange, Mimecast, a
# Spamhaus listing); OpenSMTPD writes its notices from those answers and relays them to the
# same receiver, which keeps them (--keep) as they arrived. Run as root; nothing leaves
# 127.0.0.1 and no name is looked up (every relay names 127.0.0.1). The package need not be
# installed (it would replace the system's MTA): the daemon runs from its unpacked .deb,
#   apt-get download opensmtpd && dpkg-deb -x opensmtpd_*.deb ROOT
# and listens on 127.0.0.1:10025 only. The tests never run this script: they read the
# committed samples.
set -euo pipefail
out="${1:?usage: opensmtpd-receivers-loopback.sh OUTPUT_DIR UNPACKED_DEB_ROOT}"
root="${2:?usage: opensmtpd-receivers-loopback.sh OUTPUT_DIR UNPACKED_DEB_ROOT}"
tools="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
mkdir -p "$out" "$work/kept" /var/lib/opensmtpd/empty
getent passwd opensmtpd >/dev/null || useradd -r -M -d /var/lib/opensmtpd/empty -s /usr/sbin/nologin opensmtpd
getent passwd opensmtpq >/dev/null || useradd -r -M -d /var/lib/opensmtpd/empty -s /usr/sbin/nologin opensmtpq

cat > "$work/smtpd.conf" <<'CONF'
listen on 127.0.0.1 port 10025 hostname mail.example.test
queue ttl 2m
action "remote" relay host smtp://127.0.0.1:2525 helo mail.example.test
match from local for any action "remote"
CONF
python3 "$tools/loopback-receiver.py" 2525 --lifetime 900 --keep "$work/kept" &
receiver=$!
"$root/usr/sbin/smtpd" -n -f "$work/smtpd.conf"
"$root/usr/sbin/smtpd" -d -f "$work/smtpd.conf" > "$work/smtpd.log" 2>&1 &
smtpd=$!
trap 'kill $receiver $smtpd 2>/dev/null || true' EXIT
sleep 2

send() {
    local subject="$1"; shift
    python3 - "$subject" "$@" <<'PY'
import smtplib, sys, time
subject, recipients = sys.argv[1], sys.argv[2:]
body = (f"From: sender@sender.example.test\r\nTo: {', '.join(recipients)}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{time.time_ns()}@sender.example.test>\r\n\r\nA test message for the bounce corpus.\r\n")
with smtplib.SMTP("127.0.0.1", 10025) as smtp:
    smtp.sendmail("sender@sender.example.test", recipients, body)
PY
    sleep 3
}
send 'Gmail: no such user' gmail-nosuchuser@remote.example.test
send 'Gmail: account disabled' gmail-disabled@remote.example.test
send 'Gmail: receiving rate' gmail-ratelimited@remote.example.test
send 'Gmail: unsolicited' gmail-spam@remote.example.test
send 'Gmail: unauthenticated' gmail-unauthenticated@remote.example.test
send 'Microsoft 365: recipient not found' m365-notfound@remote.example.test
send 'Microsoft 365: access denied' m365-accessdenied@remote.example.test
send 'Outlook.com: mailbox unavailable' outlook-unavailable@remote.example.test
send 'Microsoft: block list' microsoft-blocklist@remote.example.test
send 'Yahoo: mailbox not found' yahoo-notfound@remote.example.test
send 'Yahoo: no such account' yahoo-nouser@remote.example.test
send 'Yahoo: policy' yahoo-policy@remote.example.test
send 'Yahoo: deferred' yahoo-deferred@remote.example.test
send 'iCloud: unknown alias' icloud-alias@remote.example.test
send 'iCloud: local policy' icloud-policy@remote.example.test
send 'GMX: mailbox unavailable' gmx-unavailable@remote.example.test
send 'Orange: invalid recipient' orange-invalid@remote.example.test
send 'Orange: mailbox full' orange-full@remote.example.test
send 'Mimecast: invalid recipient' mimecast-invalid@remote.example.test
send 'Mimecast: blocked by the user' mimecast-blocked@remote.example.test
send 'Spamhaus listing' spamhaus-listed@remote.example.test
send 'several receivers at once' gmail-nosuchuser-2@remote.example.test orange-full-2@remote.example.test m365-notfound-2@remote.example.test
# The temporary ones come back once the queue's lifetime has ended (a few minutes).
for _ in $(seq 60); do
    [ "$(ls "$work/kept" | wc -l)" -ge 22 ] && break
    sleep 10
done
n=0
for kept in "$work"/kept/*.eml; do
    n=$((n + 1))
    cp "$kept" "$out/opensmtpd-receivers-$(printf %02d "$n").eml"
done
ls -l "$out"
