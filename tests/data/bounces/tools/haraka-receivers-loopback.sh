#!/usr/bin/env bash
# Makes the `haraka-receivers-*.eml` samples of this corpus: Haraka (from npm) relays every
# message from 127.0.0.1 to the scripted receiver (loopback-receiver.py on 127.0.0.1:2525),
# which answers with large receivers' published reply texts (its RCPT_ANSWERS and
# DATA_ANSWERS); Haraka's outbound writes its bounces from those answers and sends them to
# the remote sender through the same receiver, which keeps them (--keep) as they arrived.
# A small plugin of this script answers Haraka's get_mx hook with 127.0.0.1:2525 for every
# domain, so no name is looked up and nothing leaves 127.0.0.1. Needs node and
#   npm install Haraka@3.1   (in HARAKA_DIR)
# Temporary failures are not retried (temp_fail_intervals=none), so they bounce at once.
# Runs as any user. The tests never run this script: they read the committed samples.
set -euo pipefail
out="$(realpath -m "${1:?usage: haraka-receivers-loopback.sh OUTPUT_DIR HARAKA_DIR}")"
haraka_dir="$(realpath "${2:?usage: haraka-receivers-loopback.sh OUTPUT_DIR HARAKA_DIR}")"
tools="$(dirname "$(realpath "$0")")"
work="$(mktemp -d)"
mkdir -p "$out" "$work/kept"
"$haraka_dir/node_modules/.bin/haraka" -i "$work/inst" >/dev/null
cfg="$work/inst/config"
# Haraka's own bounce templates (an instance made by -i has none, and its bounces would lack
# their headers and text).
cp "$haraka_dir"/node_modules/Haraka/config/outbound.bounce_message* "$cfg/"
echo "mail.example.test" > "$cfg/me"
printf '[main]\nlisten=127.0.0.1:10026\nnodes=0\n' > "$cfg/smtp.ini"
printf 'relay\nloopback_mx\n' > "$cfg/plugins"
printf '[relay]\nacl=true\n' > "$cfg/relay.ini"
echo "127.0.0.1/32" > "$cfg/relay_acl_allow"
# The receiver is on loopback: Haraka skips local MXs unless told.
printf 'temp_fail_intervals=none\nlocal_mx_ok=true\n' > "$cfg/outbound.ini"
cat > "$work/inst/plugins/loopback_mx.js" <<'JS'
// Every domain's mail exchanger is the scripted receiver on loopback.
const { HarakaMx } = require('haraka-net-utils')
exports.hook_get_mx = function (next, hmail, domain) {
    next(OK, [new HarakaMx({ exchange: '127.0.0.1', port: 2525, priority: 0, from_dns: domain })])
}
JS
python3 "$tools/loopback-receiver.py" 2525 --lifetime 300 --keep "$work/kept" &
receiver=$!
(cd "$work/inst" && NODE_PATH="$haraka_dir/node_modules" exec "$haraka_dir/node_modules/.bin/haraka" -c "$work/inst") > "$work/haraka.log" 2>&1 &
haraka=$!
trap 'kill $receiver $haraka 2>/dev/null || true' EXIT
for _ in $(seq 30); do python3 -c 'import socket; socket.create_connection(("127.0.0.1", 10026), 1)' 2>/dev/null && break; sleep 1; done

sent=0
send() {
    local subject="$1"; shift
    python3 - "$subject" "$@" <<'PY'
import smtplib, sys, time
subject, recipients = sys.argv[1], sys.argv[2:]
body = (f"From: sender@sender.example.test\r\nTo: {', '.join(recipients)}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{time.time_ns()}@sender.example.test>\r\n\r\nA test message for the bounce corpus.\r\n")
with smtplib.SMTP("127.0.0.1", 10026) as smtp:
    smtp.sendmail("sender@sender.example.test", recipients, body)
PY
    sent=$((sent + 1))
    sleep 2
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
for _ in $(seq 30); do
    [ "$(ls "$work/kept" | wc -l)" -ge "$sent" ] && break
    sleep 5
done
n=0
for kept in "$work"/kept/*.eml; do
    n=$((n + 1))
    cp "$kept" "$out/haraka-receivers-$(printf %02d "$n").eml"
done
ls -l "$out"
