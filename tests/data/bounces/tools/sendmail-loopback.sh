#!/usr/bin/env bash
# Makes the `sendmail-loopback-*.eml` samples of this corpus: Debian's Sendmail 8, on
# loopback only, fails mail in the ways a sender meets (unknown users here and at the remote,
# a full mailbox at the remote, a domain that does not exist, a host where nothing listens,
# a message over the remote's SIZE, greylisting, aliases), and the notices it writes to the
# local sender's mailbox are kept as delivered (without the mbox `From ` line). Run as root
# on a scratch machine: it writes /etc/mail/loopback.mc and loopback.cf (Debian's own
# sendmail.cf is left alone) and starts its own daemon with them. Nothing leaves 127.0.0.1:
# it runs in a private mount namespace whose /etc/resolv.conf names a local responder
# answering NXDOMAIN to every question (loopback-dns.py), and the "remote receiver" is
# loopback-receiver.py on 127.0.0.1:2525. The tests never run this script: they read the
# committed samples.
set -euo pipefail
out="$(realpath -m "${1:?usage: sendmail-loopback.sh OUTPUT_DIR}")"
tools="$(dirname "$(realpath "$0")")"
[ -x /usr/libexec/sendmail/sendmail ] || { echo "sendmail is not installed (apt-get install sendmail-bin sendmail-cf)" >&2; exit 1; }
if [ -z "${LOOPBACK_NAMESPACE:-}" ]; then
    exec env LOOPBACK_NAMESPACE=1 unshare --mount "$0" "$out"
fi
mkdir -p "$out"
echo 'nameserver 127.0.0.1' > /tmp/loopback-resolv.conf
mount --bind /tmp/loopback-resolv.conf /etc/resolv.conf
# Sendmail wants its own name to resolve; the NXDOMAIN responder would not.
printf '127.0.0.1 localhost %s mail.example.test\n' "$(hostname)" > /tmp/loopback-hosts
mount --bind /tmp/loopback-hosts /etc/hosts

sm=/usr/libexec/sendmail/sendmail
cf=/etc/mail/loopback.cf
for user in sender fulluser; do id "$user" >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin "$user"; done
mkdir -p /var/spool/mqueue-loopback && chmod 700 /var/spool/mqueue-loopback
rm -f /var/spool/mqueue-loopback/*

# Sendmail builds its maps only in a directory root alone can write.
mkdir -p /var/lib/loopback-sendmail && chmod 755 /var/lib/loopback-sendmail
cat > /var/lib/loopback-sendmail/aliases <<'ALIASES'
postmaster: root
MAILER-DAEMON: root
forwarder: nobody-here-forwarded@remote.example.test
team: fulluser, missing-member@remote.example.test
ALIASES
printf '%s\n' 'remote.example.test esmtp:[127.0.0.1]' 'unreachable.example.test smtp:[127.0.0.1]' > /var/lib/loopback-sendmail/mailertable
makemap hash /var/lib/loopback-sendmail/mailertable < /var/lib/loopback-sendmail/mailertable

cat > /etc/mail/loopback.mc <<'MC'
include(`/usr/share/sendmail/cf/m4/cf.m4')dnl
VERSIONID(`sluice bounce corpus, loopback only')dnl
OSTYPE(`debian')dnl
dnl Debian's local mailer is sensible-mda (from sendmail's own package, not installed here):
dnl Sendmail's mail.local delivers to /var/mail as it would.
define(`LOCAL_MAILER_PATH', `/usr/libexec/sendmail/mail.local')dnl
define(`LOCAL_MAILER_ARGS', `mail.local -d $u')dnl
define(`confDOMAIN_NAME', `mail.example.test')dnl
define(`ALIAS_FILE', `/var/lib/loopback-sendmail/aliases')dnl
define(`QUEUE_DIR', `/var/spool/mqueue-loopback')dnl
undefine(`confHOST_STATUS_DIRECTORY')dnl
dnl One warning after a minute, the message returned after three.
define(`confTO_QUEUEWARN', `1m')dnl
define(`confTO_QUEUERETURN', `3m')dnl
define(`confMIN_QUEUE_AGE', `0')dnl
define(`confDELIVERY_MODE', `background')dnl
dnl The remote receiver listens on 2525; nothing listens on 2599.
define(`ESMTP_MAILER_ARGS', `TCP $h 2525')dnl
define(`SMTP_MAILER_ARGS', `TCP $h 2599')dnl
FEATURE(`nocanonify')dnl
FEATURE(`mailertable', `hash -o /var/lib/loopback-sendmail/mailertable')dnl
LOCAL_DOMAIN(`mail.example.test')dnl
DAEMON_OPTIONS(`Family=inet, Name=MTA-v4, Port=smtp, Addr=127.0.0.1')dnl
MAILER(`local')dnl
MAILER(`smtp')dnl
MC
m4 /etc/mail/loopback.mc > "$cf"
"$sm" -C"$cf" -bi

python3 "$tools/loopback-dns.py" 900 &
dns=$!
python3 "$tools/loopback-receiver.py" 2525 --size-limit 20000 --lifetime 900 &
receiver=$!
daemon_pid=/var/spool/mqueue-loopback/sendmail.pid
trap 'kill $dns $receiver 2>/dev/null || true; [ -s $daemon_pid ] && kill "$(head -1 $daemon_pid)" 2>/dev/null || true' EXIT
: > /var/mail/sender && chown sender:mail /var/mail/sender && chmod 660 /var/mail/sender

"$sm" -C"$cf" -bd -q15s -O PidFile=$daemon_pid
sleep 2
send() {
    local subject="$1"; shift
    printf 'From: sender@mail.example.test\nTo: %s\nSubject: %s\nMessage-ID: <%s@mail.example.test>\n\nA test message for the bounce corpus.\n' \
        "$*" "$subject" "$(date +%s%N)" | "$sm" -C"$cf" -oem -f sender@mail.example.test "$@" || true
    sleep 3
}
send 'unknown local user' nosuchuser@mail.example.test
send 'domain that does not exist' someone@nowhere.example.test
send 'unknown user at the remote' nobody-here@remote.example.test
send 'forwarded to an unknown user' forwarder@mail.example.test
send 'several recipients' missing-one@remote.example.test missing-two@remote.example.test nosuchuser@mail.example.test
send 'alias of a local user and an unknown remote user' team@mail.example.test
send 'full mailbox at the remote' full-mailbox@remote.example.test
{
    printf 'From: sender@mail.example.test\nTo: big@remote.example.test\nSubject: too large for the remote\nMessage-ID: <%s@mail.example.test>\n\n' "$(date +%s%N)"
    head -c 30000 /dev/zero | tr '\0' 'y' | fold -w 76
} | "$sm" -C"$cf" -oem -f sender@mail.example.test big@remote.example.test || true
send 'nobody listening' someone@unreachable.example.test
send 'greylisted every time' greylisted@remote.example.test
# Eight notices at once, then a warning and a returned message each for the last two.
for _ in $(seq 60); do
    [ "$(grep -c '^From ' /var/mail/sender)" -ge 12 ] && break
    sleep 10
done

python3 - "$out" <<'PY'
import mailbox, sys
box = mailbox.mbox("/var/mail/sender")
for n, key in enumerate(box.keys(), 1):
    with open(f"{sys.argv[1]}/sendmail-loopback-{n:02d}.eml", "wb") as f:
        f.write(box.get_bytes(key, from_=False))
PY
ls -l "$out"
