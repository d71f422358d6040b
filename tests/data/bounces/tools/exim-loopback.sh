#!/usr/bin/env bash
# Makes the `exim-loopback-1*.eml` samples of this corpus: Debian's Exim 4, on loopback only,
# fails mail in the ways a sender meets (unknown users here and at the remote, a full
# mailbox, a domain that does not exist, a host where nothing listens, a message too large,
# greylisting, an alias), and the notices it writes to the local sender's mailbox are kept as
# delivered (without the mbox `From ` line). Run as root on a scratch machine: it writes
# /etc/exim4/exim4.conf (which Debian's exim4 reads before its generated configuration) and
# starts its own daemon. Nothing leaves 127.0.0.1: it runs in a private mount namespace whose
# /etc/resolv.conf names a local responder answering NXDOMAIN to every question
# (loopback-dns.py), and the "remote receiver" is loopback-receiver.py on 127.0.0.1:2525.
# The tests never run this script: they read the committed samples.
set -euo pipefail
out="$(realpath -m "${1:?usage: exim-loopback.sh OUTPUT_DIR}")"
tools="$(dirname "$(realpath "$0")")"
command -v exim4 >/dev/null || { echo "exim4 is not installed (apt-get install exim4-daemon-light)" >&2; exit 1; }
if [ -z "${LOOPBACK_NAMESPACE:-}" ]; then
    exec env LOOPBACK_NAMESPACE=1 unshare --mount "$0" "$out"
fi
mkdir -p "$out"
echo 'nameserver 127.0.0.1' > /tmp/loopback-resolv.conf
mount --bind /tmp/loopback-resolv.conf /etc/resolv.conf

[ -s /run/exim4/exim.pid ] && kill "$(cat /run/exim4/exim.pid)" 2>/dev/null || true
sleep 1
for user in sender fulluser; do id "$user" >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin "$user"; done
rm -f /var/spool/exim4/db/* /var/spool/exim4/input/* /var/spool/exim4/msglog/* 2>/dev/null || true

cat > /etc/exim4/loopback-aliases <<'ALIASES'
forwarder: nobody-here-forwarded@remote.example.test
team: fulluser, missing-member@remote.example.test
ALIASES

cat > /etc/exim4/exim4.conf <<'CONF'
primary_hostname = mail.example.test
qualify_domain = mail.example.test
domainlist local_domains = mail.example.test
local_interfaces = 127.0.0.1
daemon_smtp_ports = 25
exim_user = Debian-exim
exim_group = Debian-exim
never_users = root
trusted_users = root
spool_directory = /var/spool/exim4
log_file_path = /var/log/exim4/%slog
host_lookup =
# One warning once a message has waited a minute (the next would come after a day), then
# the retry rule gives up after three.
delay_warning = 1m:24h
acl_smtp_rcpt = acl_check_rcpt

begin acl
acl_check_rcpt:
  accept hosts = :
  accept hosts = 127.0.0.1

begin routers
# The remote receiver (loopback-receiver.py) and a host where nothing listens.
remote_gate:
  driver = manualroute
  domains = remote.example.test
  route_list = * 127.0.0.1
  self = send
  transport = gate_smtp
unreachable:
  driver = manualroute
  domains = unreachable.example.test
  route_list = * 127.0.0.1
  self = send
  transport = closed_port_smtp
# Every other remote domain is looked up in DNS (NXDOMAIN for all of them here).
dnslookup:
  driver = dnslookup
  domains = ! +local_domains
  transport = gate_smtp
  no_more
system_aliases:
  driver = redirect
  domains = +local_domains
  allow_fail
  allow_defer
  data = ${lookup{$local_part}lsearch{/etc/exim4/loopback-aliases}}
local_user:
  driver = accept
  domains = +local_domains
  check_local_user
  transport = local_delivery
  # As Debian's default configuration says it (router 900_exim4-config_local_user).
  cannot_route_message = Unknown user

begin transports
gate_smtp:
  driver = smtp
  port = 2525
  allow_localhost
closed_port_smtp:
  driver = smtp
  port = 2599
  allow_localhost
local_delivery:
  driver = appendfile
  file = /var/mail/$local_part_data
  delivery_date_add
  envelope_to_add
  return_path_add
  group = mail
  mode = 0660
  mode_fail_narrower = false
  # The loopback users have no home directory.
  current_directory = /
  home_directory = /
  # The prefill below is 201,618 bytes: the next message goes over.
  quota = ${if eq{$local_part}{fulluser}{202000}{}}

begin retry
*  quota
*  *  F,3m,20s
CONF
exim4 -bV >/dev/null

python3 "$tools/loopback-dns.py" 900 &
dns=$!
python3 "$tools/loopback-receiver.py" 2525 --size-limit 20000 --lifetime 900 &
receiver=$!
trap 'kill $dns $receiver 2>/dev/null || true; [ -s /run/exim4/exim.pid ] && kill "$(cat /run/exim4/exim.pid)" 2>/dev/null || true' EXIT

# A mailbox one message short of its quota.
head -c 199000 /dev/zero | tr '\0' 'x' | fold -w 76 > /var/mail/fulluser
chown fulluser:mail /var/mail/fulluser
: > /var/mail/sender && chown sender:mail /var/mail/sender

exim4 -bd -q15s
sleep 2
send() {
    local subject="$1"; shift
    printf 'From: sender@mail.example.test\nTo: %s\nSubject: %s\nMessage-ID: <%s@mail.example.test>\n\nA test message for the bounce corpus.\n' \
        "$*" "$subject" "$(date +%s%N)" | /usr/sbin/sendmail -f sender@mail.example.test "$@"
    sleep 3
}
send 'unknown local user' nosuchuser@mail.example.test
send 'mailbox over its quota' fulluser@mail.example.test
send 'domain that does not exist' someone@nowhere.example.test
send 'unknown user at the remote' nobody-here@remote.example.test
send 'forwarded to an unknown user' forwarder@mail.example.test
send 'several recipients' missing-one@remote.example.test missing-two@remote.example.test nosuchuser@mail.example.test
send 'alias of a full mailbox and an unknown remote user' team@mail.example.test
send 'full mailbox at the remote' full-mailbox@remote.example.test
# Too large for the remote (its SIZE is 20000).
{
    printf 'From: sender@mail.example.test\nTo: big@remote.example.test\nSubject: too large for the remote\nMessage-ID: <%s@mail.example.test>\n\n' "$(date +%s%N)"
    head -c 30000 /dev/zero | tr '\0' 'y' | fold -w 76
} | /usr/sbin/sendmail -f sender@mail.example.test big@remote.example.test
send 'nobody listening' someone@unreachable.example.test
send 'greylisted every time' greylisted@remote.example.test
# Two delay warnings and two final notices come within the retry rule's three minutes and
# the queue runs after them: wait for all thirteen, bounded.
for _ in $(seq 60); do
    [ "$(grep -c '^From ' /var/mail/sender)" -ge 13 ] && break
    sleep 10
done

python3 - "$out" <<'PY'
import mailbox, sys
box = mailbox.mbox("/var/mail/sender")
for n, key in enumerate(box.keys(), 10):
    with open(f"{sys.argv[1]}/exim-loopback-{n:02d}.eml", "wb") as f:
        f.write(box.get_bytes(key, from_=False))
PY
ls -l "$out"
