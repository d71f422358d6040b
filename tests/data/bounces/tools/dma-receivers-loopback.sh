#!/usr/bin/env bash
# Makes the `dma-receivers-*.eml` samples of this corpus: Debian's dma (the DragonFly Mail
# Agent) sends every message to the scripted receiver (loopback-receiver.py on
# 127.0.0.1:2525) as its smarthost; the receiver answers with large receivers' published
# reply texts (see its RCPT_ANSWERS and DATA_ANSWERS), dma writes its plain-text notices from
# them and sends them to the remote sender through the same smarthost, which keeps them
# (--keep) as they arrived. The package need not be installed (it would replace the system's
# MTA): dma runs from its unpacked .deb,
#   apt-get download dma && dpkg-deb -x dma_*.deb ROOT
# with /etc/dma/dma.conf written here (and put back as it was afterwards) and its spool in
# /var/spool/dma. Run as root; nothing leaves 127.0.0.1. dma retries temporary failures for
# days, so only permanent answers are asked for. The tests never run this script.
set -euo pipefail
out="$(realpath -m "${1:?usage: dma-receivers-loopback.sh OUTPUT_DIR UNPACKED_DEB_ROOT}")"
root="$(realpath "${2:?usage: dma-receivers-loopback.sh OUTPUT_DIR UNPACKED_DEB_ROOT}")"
tools="$(dirname "$(realpath "$0")")"
work="$(mktemp -d)"
mkdir -p "$out" "$work/kept" /etc/dma /var/spool/dma
# As the package sets it up: dma drops root for the mail group.
chgrp mail /var/spool/dma && chmod 2775 /var/spool/dma
# An existing configuration is put back afterwards.
[ -e /etc/dma/dma.conf ] && cp -p /etc/dma/dma.conf "$work/dma.conf.saved"
cat > /etc/dma/dma.conf <<'CONF'
SMARTHOST 127.0.0.1
PORT 2525
MAILNAME mail.example.test
CONF
python3 "$tools/loopback-receiver.py" 2525 --lifetime 300 --keep "$work/kept" &
receiver=$!
restore() {
    kill $receiver 2>/dev/null || true
    if [ -e "$work/dma.conf.saved" ]; then cp -p "$work/dma.conf.saved" /etc/dma/dma.conf; else rm -f /etc/dma/dma.conf; fi
}
trap restore EXIT
sleep 1

sent=0
send() {
    local subject="$1"; shift
    printf 'From: sender@sender.example.test\nTo: %s\nSubject: %s\nMessage-ID: <%s@sender.example.test>\n\nA test message for the bounce corpus.\n' \
        "$(IFS=,; echo "$*")" "$subject" "$(date +%s%N)" | "$root/usr/sbin/dma" -f sender@sender.example.test "$@" || true
    sent=$((sent + 1))
    sleep 3
}
send 'Gmail: no such user' gmail-nosuchuser@remote.example.test
send 'Gmail: account disabled' gmail-disabled@remote.example.test
send 'Gmail: unsolicited' gmail-spam@remote.example.test
send 'Gmail: unauthenticated' gmail-unauthenticated@remote.example.test
send 'Microsoft 365: recipient not found' m365-notfound@remote.example.test
send 'Microsoft 365: access denied' m365-accessdenied@remote.example.test
send 'Outlook.com: mailbox unavailable' outlook-unavailable@remote.example.test
send 'Microsoft: block list' microsoft-blocklist@remote.example.test
send 'Yahoo: mailbox not found' yahoo-notfound@remote.example.test
send 'Yahoo: no such account' yahoo-nouser@remote.example.test
send 'Yahoo: policy' yahoo-policy@remote.example.test
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
    cp "$kept" "$out/dma-receivers-$(printf %02d "$n").eml"
done
ls -l "$out"
