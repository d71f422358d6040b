"""Verifies every DKIM-Signature of a message with dkimpy, an independent verifier.

Usage: dkimpy_verify.py MESSAGE RECORDS

RECORDS is a JSON object from DNS names (such as "sel._domainkey.example.com") to the TXT
value published there; no real DNS is asked. Prints one line per signature, topmost first:
"<d=> pass" or "<d=> fail <reason>". Exits 0 when every signature passed, 1 otherwise.
"""

import json
import logging
import sys

import dkim


def main():
    with open(sys.argv[1], "rb") as file:
        message = file.read()
    with open(sys.argv[2], encoding="utf-8") as file:
        records = {name.lower().rstrip("."): value for name, value in json.load(file).items()}

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        value = records.get(name.lower().rstrip("."))
        return value.encode("ascii") if value is not None else None

    log = logging.getLogger("dkimpy")
    headers = dkim.DKIM(message).headers
    count = sum(1 for name, _ in headers if name.lower() == b"dkim-signature")
    if count == 0:
        print("no DKIM-Signature")
        return 1
    failed = False
    for index in range(count):
        verifier = dkim.DKIM(message, logger=log)
        try:
            ok = verifier.verify(idx=index, dnsfunc=dnsfunc)
            reason = ""
        except dkim.DKIMException as error:
            ok, reason = False, str(error)
        domain = (verifier.domain or b"?").decode("ascii", "replace")
        if ok:
            print(f"{domain} pass")
        else:
            failed = True
            print(f"{domain} fail {reason}".rstrip())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
