#!/usr/bin/env bash
# Makes the `nullmailer-loopback-*.eml` samples of this corpus: Debian's nullmailer (a relay-
# only MTA) sends every message to loopback-receiver.py on 127.0.0.1:2525 and, when the
# receiver refuses it, writes a delivery status notification with nullmailer-dsn and sends
# that to the sender at the same receiver, which keeps it (--keep) as it arrived over SMTP.
# Run as root on a scratch machine: it writes /etc/nullmailer/{me,remotes,queuelifetime,
# pausetime} and runs nullmailer-send itself. Nothing leaves 127.0.0.1. The tests never run
# this script: they read the committed samples.
set -euo pipefail
out="$(realpath -m "${1:?usage: nullmailer-loopback.sh OUTPUT_DIR}")"
tools="$(dirname "$(realpath "$0")")"
command -v nullmailer-send >/dev/null || { echo "nullmailer is not installed (apt-get install nullmailer)" >&2; exit 1; }
mkdir -p "$out"
echo mail.example.test > /etc/nullmailer/me
echo mail.example.test > /etc/nullmailer/defaultdomain
echo '127.0.0.1 smtp --port=2525' > /etc/nullmailer/remotes
# Retry every 20 seconds; give a message up after two minutes.
echo 120 > /etc/nullmailer/queuelifetime
echo 20 > /etc/nullmailer/pausetime
rm -f /var/spool/nullmailer/queue/* /var/spool/nullmailer/failed/* 2>/dev/null || true

python3 "$tools/loopback-receiver.py" 2525 --size-limit 20000 --lifetime 600 --keep "$out" &
receiver=$!
su -s /bin/sh mail -c 'exec nullmailer-send' > /tmp/nullmailer-send.log 2>&1 &
sender=$!
trap 'kill $receiver $sender 2>/dev/null || true' EXIT
sleep 1

send() {
    local subject="$1"; shift
    printf 'From: sender@remote.example.test\nTo: %s\nSubject: %s\nMessage-ID: <%s@mail.example.test>\n\nA test message for the bounce corpus.\n' \
        "$*" "$subject" "$(date +%s%N)" | /usr/sbin/sendmail -f sender@remote.example.test "$@" || true
    sleep 3
}
send 'unknown user at the remote' nobody-here@remote.example.test
send 'several recipients' missing-one@remote.example.test missing-two@remote.example.test
send 'full mailbox at the remote' full-mailbox@remote.example.test
{
    printf 'From: sender@remote.example.test\nTo: big@remote.example.test\nSubject: too large for the remote\nMessage-ID: <%s@mail.example.test>\n\n' "$(date +%s%N)"
    head -c 30000 /dev/zero | tr '\0' 'y' | fold -w 76
} | /usr/sbin/sendmail -f sender@remote.example.test big@remote.example.test || true
send 'greylisted every time' greylisted@remote.example.test
for _ in $(seq 30); do
    [ "$(ls "$out" | wc -l)" -ge 5 ] && break
    sleep 10
done
sleep 5
cd "$out"
for kept in [0-9][0-9][0-9].eml; do
    mv "$kept" "nullmailer-loopback-${kept#0}"
done
ls -l "$out"
