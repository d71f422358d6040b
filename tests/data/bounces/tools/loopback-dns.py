#!/usr/bin/env python3
"""A DNS responder on 127.0.0.1:53 that answers NXDOMAIN to every question, so an MTA on
loopback learns that a domain does not exist without asking any server beyond this machine.
The loopback scripts start it and point the MTA's resolver at it (a private mount namespace
with its own /etc/resolv.conf). Stops after the number of seconds given (default 900)."""

import socket
import sys

lifetime = float(sys.argv[1]) if len(sys.argv) > 1 else 900
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
s.settimeout(lifetime)
try:
    while True:
        query, peer = s.recvfrom(512)
        if len(query) < 12:
            continue
        # Same id and question; QR=1, RD copied, RA=1, RCODE=3 (NXDOMAIN); no answers.
        flags = bytes([0x80 | (query[2] & 0x01), 0x83])
        s.sendto(query[:2] + flags + query[4:6] + b"\0\0\0\0\0\0" + query[12:], peer)
except socket.timeout:
    pass
