#!/usr/bin/env bash
# Makes the `courier-loopback-*.eml` samples of this corpus: Debian's Courier MTA, on
# loopback only, fails mail in the ways a sender meets, and sends its notices to a sender
# address at the scripted receiver (loopback-receiver.py on 127.0.0.1:2525 with --keep),
# which keeps them as they arrived over SMTP. Run as root on a scratch machine: it writes
# Courier's /etc/courier/{me,locals,defaultdomain,esmtproutes,queuetime,warntime,retry*} and
# an alias, and starts Courier itself. Nothing leaves 127.0.0.1: it runs in a private mount
# namespace whose /etc/resolv.conf names a local responder answering NXDOMAIN to every
# question (loopback-dns.py). The tests never run this script: they read the committed
# samples.
set -euo pipefail
out="$(realpath -m "${1:?usage: courier-loopback.sh OUTPUT_DIR}")"
tools="$(dirname "$(realpath "$0")")"
command -v courier >/dev/null || { echo "courier is not installed (apt-get install courier-mta)" >&2; exit 1; }
if [ -z "${LOOPBACK_NAMESPACE:-}" ]; then
    exec env LOOPBACK_NAMESPACE=1 unshare --mount "$0" "$out"
fi
mkdir -p "$out"
echo 'nameserver 127.0.0.1' > /tmp/loopback-resolv.conf
mount --bind /tmp/loopback-resolv.conf /etc/resolv.conf

courier stop 2>/dev/null || true
echo mail.example.test > /etc/courier/me
printf '%s\n' mail.example.test localhost > /etc/courier/locals
echo mail.example.test > /etc/courier/defaultdomain
printf '%s\n' 'remote.example.test: [127.0.0.1],2525' 'unreachable.example.test: [127.0.0.1],2599' > /etc/courier/esmtproutes
# A warning after a minute, the message returned after three, tries every 20 seconds.
echo 3m > /etc/courier/queuetime
echo 1m > /etc/courier/warntime
echo 20s > /etc/courier/retryalpha
echo 20s > /etc/courier/retrygamma
echo 3 > /etc/courier/retrybeta
echo 1 > /etc/courier/retrymaxdelta
printf '%s\n' 'forwarder: nobody-here-forwarded@remote.example.test' > /etc/courier/aliases/loopback
makealiases

python3 "$tools/loopback-dns.py" 900 &
dns=$!
python3 "$tools/loopback-receiver.py" 2525 --size-limit 20000 --lifetime 900 --keep "$out" &
receiver=$!
trap 'kill $dns $receiver 2>/dev/null || true; courier stop 2>/dev/null || true; authdaemond stop 2>/dev/null || true' EXIT
# The local module asks the authentication daemon whether a local user exists.
authdaemond start
courier start
sleep 3

send() {
    local subject="$1"; shift
    printf 'From: sender@remote.example.test\nTo: %s\nSubject: %s\nMessage-ID: <%s@mail.example.test>\n\nA test message for the bounce corpus.\n' \
        "$*" "$subject" "$(date +%s%N)" | /usr/sbin/sendmail -f sender@remote.example.test "$@" || true
    sleep 3
}
send 'unknown local user' nosuchuser@mail.example.test
send 'domain that does not exist' someone@nowhere.example.test
send 'unknown user at the remote' nobody-here@remote.example.test
send 'forwarded to an unknown user' forwarder@mail.example.test
send 'several recipients' missing-one@remote.example.test missing-two@remote.example.test
send 'full mailbox at the remote' full-mailbox@remote.example.test
{
    printf 'From: sender@remote.example.test\nTo: big@remote.example.test\nSubject: too large for the remote\nMessage-ID: <%s@mail.example.test>\n\n' "$(date +%s%N)"
    head -c 30000 /dev/zero | tr '\0' 'y' | fold -w 76
} | /usr/sbin/sendmail -f sender@remote.example.test big@remote.example.test || true
send 'nobody listening' someone@unreachable.example.test
send 'greylisted every time' greylisted@remote.example.test
for _ in $(seq 60); do
    [ "$(ls "$out" | wc -l)" -ge 11 ] && break
    sleep 10
done
sleep 5
cd "$out"
for kept in [0-9][0-9][0-9].eml; do
    mv "$kept" "courier-loopback-${kept#0}"
done
ls -l "$out"
