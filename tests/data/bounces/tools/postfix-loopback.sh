#!/usr/bin/env bash
# Makes the `postfix-loopback-*.eml` samples of this corpus: Debian's Postfix, on loopback
# only, bounces mail to addresses that cannot be delivered, and the notices it writes to the
# local sender's mailbox are kept as they were delivered (without the mbox `From ` line).
# Run as root on a scratch machine (it rewrites /etc/postfix/main.cf, adds local users and
# stops Postfix at the end); nothing leaves 127.0.0.1: the smtp client's DNS is a local
# responder that answers NXDOMAIN to every question. The tests never run this script: they
# read the committed samples.
set -euo pipefail
out="${1:?usage: postfix-loopback.sh OUTPUT_DIR}"
mkdir -p "$out"
command -v postfix >/dev/null || { echo "postfix is not installed (apt-get install postfix)" >&2; exit 1; }

postfix stop 2>/dev/null || true
for user in sender fulluser; do id "$user" >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin "$user"; done

postconf -e \
    'myhostname = mail.example.test' 'mydomain = example.test' 'myorigin = $myhostname' \
    'mydestination = mail.example.test, remote.example.test, localhost' \
    'inet_interfaces = loopback-only' 'inet_protocols = ipv4' \
    'default_transport = smtp' 'relay_transport = smtp' 'relayhost =' \
    'transport_maps = hash:/etc/postfix/transport' \
    'message_size_limit = 100000' 'mailbox_size_limit = 200000' \
    'smtp_tls_security_level = none' 'smtpd_tls_security_level = none' \
    'bounce_queue_lifetime = 0' 'maximal_queue_lifetime = 0' \
    'alias_maps = hash:/etc/aliases' 'alias_database = hash:/etc/aliases'
# A second SMTP server on 127.0.0.1:2525, standing for a remote receiver: it calls itself
# gate.example.test (so the client sees no loop), trusts no client network (so it refuses
# to relay), and rejects unknown users of remote.example.test at RCPT TO.
postconf -M -e 'gate/inet=127.0.0.1:2525 inet n - n - - smtpd -o myhostname=gate.example.test -o mynetworks=192.0.2.1/32 -o smtpd_relay_restrictions=permit_mynetworks,reject_unauth_destination'
printf '%s\n' 'remote.example.test smtp:[127.0.0.1]:2525' 'relay.example.test smtp:[127.0.0.1]:2525' > /etc/postfix/transport
postmap /etc/postfix/transport
grep -q '^forwarder:' /etc/aliases || echo 'forwarder: gone-to@remote.example.test' >> /etc/aliases
grep -q '^team:' /etc/aliases || echo 'team: fulluser, nobody-here@remote.example.test' >> /etc/aliases
newaliases

# The local DNS: NXDOMAIN for every name, so a domain that does not exist is answered as such.
python3 - <<'PY' &
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
s.settimeout(120)
try:
    while True:
        query, peer = s.recvfrom(512)
        # Same id and question; QR=1, RD copied, RA=1, RCODE=3 (NXDOMAIN); no answers.
        flags = bytes([0x80 | (query[2] & 0x01), 0x83])
        s.sendto(query[:2] + flags + query[4:6] + b"\0\0\0\0\0\0" + query[12:], peer)
except socket.timeout:
    pass
PY
dns=$!
mkdir -p /var/spool/postfix/etc
echo 'nameserver 127.0.0.1' > /var/spool/postfix/etc/resolv.conf

# A mailbox one message short of its limit.
head -c 199000 /dev/zero | tr '\0' 'x' | fold -w 76 > /var/mail/fulluser
chown fulluser:mail /var/mail/fulluser
: > /var/mail/sender && chown sender:mail /var/mail/sender

postfix start
sleep 2
send() {
    local subject="$1"; shift
    printf 'From: sender@mail.example.test\nTo: %s\nSubject: %s\nMessage-ID: <%s@mail.example.test>\n\nA test message for the bounce corpus.\n' \
        "$*" "$subject" "$(date +%s%N)" | /usr/sbin/sendmail -f sender@mail.example.test "$@"
}
send 'unknown local user' nosuchuser@mail.example.test
send 'mailbox over its size limit' fulluser@mail.example.test
send 'domain that does not exist' someone@nowhere.example.test
send 'relay refused' someone@relay.example.test
send 'unknown user at the remote' nobody-here@remote.example.test
send 'forwarded to an unknown user' forwarder@mail.example.test
send 'several recipients' missing-one@mail.example.test missing-two@mail.example.test fulluser@mail.example.test
send 'alias of a full mailbox and an unknown remote user' team@mail.example.test
sleep 15
postfix flush; sleep 10
postfix stop
kill "$dns" 2>/dev/null || true

# Split the sender's mbox into one file per notice.
python3 - "$out" <<'PY'
import mailbox, sys
box = mailbox.mbox("/var/mail/sender")
for n, key in enumerate(box.keys(), 1):
    with open(f"{sys.argv[1]}/postfix-loopback-{n:02d}.eml", "wb") as f:
        f.write(box.get_bytes(key, from_=False))
PY
ls -l "$out"
