#!/usr/bin/env python3
"""A scripted SMTP receiver on 127.0.0.1 standing for "the remote side" of the loopback
samples made by exim-loopback.sh, sendmail-loopback.sh and the like.

The sending MTA under test relays to it and writes its own notice from the answers; the
notice's layout is the MTA's, the remote's words are these (each copied from a real
receiver, named beside it). Which answer a recipient gets depends on its local part only:

    nobody-here*, missing*  550 at RCPT TO, Postfix's unknown-user text
    full-mailbox*           552 5.2.2 at RCPT TO, Dovecot's quota text
    greylisted*             450 4.2.0 at RCPT TO, postgrey's text (every time)
    anything else           250, and the message is accepted (and thrown away)

Messages larger than --size-limit are refused at MAIL FROM when the client declares
SIZE=, else after DATA, with Postfix's text (a notice from the null sender is not
refused for its size). Accepted messages are thrown away, or written
to --keep DIR as NNN.eml (for MTAs that send their notices on to a remote sender rather
than to a local mailbox). Stops after --lifetime seconds.
Run: loopback-receiver.py PORT [--size-limit N] [--lifetime S] [--name HOST] [--keep DIR]
"""

import argparse
import asyncio
import itertools
import os
import re

ADDRESS = re.compile(r"<([^>]*)>")


def rcpt_answer(address: str) -> str:
    """The reply to RCPT TO for one address (see the module's table)."""
    local = address.split("@", 1)[0].lower()
    if local.startswith(("nobody-here", "missing")):
        # Postfix's smtpd, reject_unlisted_recipient.
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in local recipient table"
    if local.startswith("full-mailbox"):
        # Dovecot's LMTP/submission quota check at RCPT TO.
        return f"552 5.2.2 <{address}> Quota exceeded (mailbox for user is full)"
    if local.startswith("greylisted"):
        # postgrey's default reject text, through Postfix's check_policy_service.
        return (
            f"450 4.2.0 <{address}>: Recipient address rejected: Greylisted, "
            "see http://postgrey.schweikert.ch/help/remote.example.test.html"
        )
    return "250 2.1.5 Ok"


KEPT = itertools.count(1)


async def session(reader, writer, name: str, size_limit: int, keep: str) -> None:
    async def say(line: str) -> None:
        writer.write(line.encode() + b"\r\n")
        await writer.drain()

    await say(f"220 {name} ESMTP")
    accepted = 0
    limit = size_limit
    try:
        while True:
            raw = await reader.readline()
            if not raw:
                return
            line = raw.decode("latin-1").rstrip("\r\n")
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                await say(f"250-{name}")
                await say(f"250-SIZE {size_limit}")
                await say("250 8BITMIME")
            elif verb == "HELO":
                await say(f"250 {name}")
            elif verb == "MAIL":
                # A notice (null sender) is kept whatever its size: it may return the
                # too-large message itself.
                null_sender = "<>" in line
                limit = size_limit if not null_sender else 1 << 30
                declared = re.search(r"SIZE=(\d+)", line, re.IGNORECASE)
                if declared and int(declared.group(1)) > limit:
                    # Postfix's smtpd for a declared size over message_size_limit.
                    await say("552 5.3.4 Message size exceeds fixed limit")
                else:
                    accepted = 0
                    await say("250 2.1.0 Ok")
            elif verb == "RCPT":
                found = ADDRESS.search(line)
                answer = rcpt_answer(found.group(1) if found else "")
                accepted += answer.startswith("250")
                await say(answer)
            elif verb == "DATA":
                if not accepted:
                    await say("554 5.5.1 Error: no valid recipients")
                    continue
                await say("354 End data with <CR><LF>.<CR><LF>")
                lines = []
                while True:
                    chunk = await reader.readline()
                    if not chunk or chunk in (b".\r\n", b".\n"):
                        break
                    # Undo dot-stuffing (RFC 5321 4.5.2).
                    lines.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                if sum(map(len, lines)) > limit:
                    await say("552 5.3.4 Message size exceeds fixed limit")
                else:
                    if keep:
                        path = os.path.join(keep, f"{next(KEPT):03d}.eml")
                        with open(path, "wb") as kept:
                            kept.write(b"".join(lines).replace(b"\r\n", b"\n"))
                    await say("250 2.0.0 Ok: queued")
            elif verb == "QUIT":
                await say("221 2.0.0 Bye")
                return
            elif verb in ("RSET", "NOOP"):
                accepted = 0 if verb == "RSET" else accepted
                await say("250 2.0.0 Ok")
            else:
                await say("502 5.5.2 Error: command not recognized")
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--size-limit", type=int, default=20000)
    parser.add_argument("--lifetime", type=float, default=900)
    parser.add_argument("--name", default="gate.example.test")
    parser.add_argument("--keep", default="")
    args = parser.parse_args()
    server = await asyncio.start_server(
        lambda r, w: session(r, w, args.name, args.size_limit, args.keep),
        "127.0.0.1",
        args.port,
    )
    async with server:
        try:
            await asyncio.wait_for(server.serve_forever(), args.lifetime)
        except asyncio.TimeoutError:
            pass


if __name__ == "__main__":
    asyncio.run(main())
