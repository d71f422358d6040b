#!/usr/bin/env python3
"""A scripted SMTP receiver on 127.0.0.1 standing for "the remote side" of the loopback
samples made by exim-loopback.sh, sendmail-loopback.sh and the like.

The sending MTA under test relays to it and writes its own notice from the answers; the
notice's layout is the MTA's, the remote's words are these (each copied from a real
receiver, named beside it). Which answer a recipient gets depends on its local part only:

    nobody-here*, missing*  550 at RCPT TO, Postfix's unknown-user text
    full-mailbox*           552 5.2.2 at RCPT TO, Dovecot's quota text
    greylisted*             450 4.2.0 at RCPT TO, postgrey's text (every time)
    a prefix of RCPT_ANSWERS / DATA_ANSWERS below: a large receiver's published text, at
                            RCPT TO or at the end of DATA (Gmail, Microsoft, Yahoo, Apple,
                            GMX, Orange, Mimecast, Spamhaus through Postfix)
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
    for prefix, answer in RCPT_ANSWERS:
        if local.startswith(prefix):
            return answer.format(address=address)
    return "250 2.1.5 Ok"


# Answers at RCPT TO, by local-part prefix, each as the receiver publishes it in its
# postmaster or error-code documentation (multi-line replies joined with "\n"; the session
# sends them as continuation lines). "{address}" is the recipient.
RCPT_ANSWERS = [
    # Gmail, "SMTP errors and codes" (support.google.com/a/answer/3726730).
    ("gmail-nosuchuser", "550-5.1.1 The email account that you tried to reach does not exist. Please try\n"
     "550-5.1.1 double-checking the recipient's email address for typos or\n"
     "550-5.1.1 unnecessary spaces. For more information, go to\n"
     "550 5.1.1  https://support.google.com/mail/?p=NoSuchUser a1si123.45 - gsmtp"),
    ("gmail-disabled", "550-5.2.1 The email account that you tried to reach is disabled. For more\n"
     "550 5.2.1 information, go to https://support.google.com/mail/?p=DisabledUser a1si123.45 - gsmtp"),
    ("gmail-ratelimited", "450-4.2.1 The user you are trying to contact is receiving mail at a rate that\n"
     "450-4.2.1 prevents additional messages from being delivered. Please resend your\n"
     "450-4.2.1 message at a later time. If the user is able to receive mail at that\n"
     "450 4.2.1 time, your message will be delivered. https://support.google.com/mail/?p=ReceivingRate a1si123.45 - gsmtp"),
    # Microsoft 365 and Outlook.com, "Email non-delivery reports in Exchange Online".
    ("m365-notfound", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"),
    ("m365-accessdenied", "550 5.4.1 Recipient address rejected: Access denied. For more information see "
     "https://aka.ms/EXOSmtpErrors [AM2PEPF0001C70F.eurprd05.prod.outlook.com]"),
    ("outlook-unavailable", "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). "
     "[BN8NAM11FT012.eop-nam11.prod.protection.outlook.com]"),
    # Yahoo, "SMTP error codes" (senders.yahooinc.com).
    ("yahoo-notfound", "552 1 Requested mail action aborted, mailbox not found"),
    ("yahoo-deferred", "421 4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred due to unexpected "
     "volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"),
    # Apple iCloud, "postmaster information for iCloud Mail".
    ("icloud-alias", "550 5.1.1 <{address}>: unknown or illegal alias: {address}"),
    # GMX and WEB.DE: the RFC 5321 text, at RCPT TO for an address they do not have.
    ("gmx-unavailable", "550 Requested action not taken: mailbox unavailable"),
    # Orange (France), its "OFR" codes.
    ("orange-invalid", "550 5.1.1 <{address}>: Recipient address rejected: Adresse d au moins un "
     "destinataire invalide. Invalid recipient. OFR_416 [416]"),
    ("orange-full", "552 5.2.2 <{address}>: Recipient address rejected: Boite du destinataire pleine. "
     "Recipient mailbox full. OFR_417 [417]"),
    # Mimecast, "Mimecast SMTP error codes" (DOC-1369).
    ("mimecast-invalid", "550 Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550 "
     "[bRnqNE7HPGCbWmmOHpcKdg.uk41]"),
    ("mimecast-blocked", "550 Envelope blocked - User Entry - https://community.mimecast.com/docs/DOC-1369#550 "
     "[gR2OihzjMkKm9EqEY1wTbw.uk137]"),
    # Postfix's reject_rbl_client text, as receivers using Spamhaus's zone answer.
    ("spamhaus-listed", "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org; "
     "https://www.spamhaus.org/query/ip/127.0.0.1"),
]

# Answers at the end of DATA, by the local part of the message's first accepted recipient
# (same sources as above): refusals of the message, not of an address.
DATA_ANSWERS = [
    ("gmail-spam", "550-5.7.1 [127.0.0.1      12] Our system has detected that this message is\n"
     "550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail,\n"
     "550-5.7.1 this message has been blocked. For more information, go to\n"
     "550 5.7.1  https://support.google.com/mail/?p=UnsolicitedMessageError a1si123.45 - gsmtp"),
    ("gmail-unauthenticated", "550-5.7.26 This mail has been blocked because the sender is\n"
     "550-5.7.26 unauthenticated. Gmail requires all senders to authenticate with\n"
     "550-5.7.26 either SPF or DKIM.\n"
     "550 5.7.26  https://support.google.com/mail/answer/81126#authentication a1si123.45 - gsmtp"),
    ("yahoo-nouser", "554 delivery error: dd This user doesn't have a yahoo.com account ({address}) [0] - "
     "mta4012.mail.gq1.yahoo.com"),
    ("yahoo-policy", "554 5.7.9 Message not accepted for policy reasons.  See https://postmaster.yahooinc.com/error-codes"),
    ("icloud-policy", "554 5.7.1 [CS01] Message rejected due to local policy. Please visit "
     "https://support.apple.com/en-us/HT204137"),
    ("microsoft-blocklist", "550 5.7.1 Unfortunately, messages from [127.0.0.1] weren't sent. Please contact "
     "your Internet service provider since part of their network is on our block list (S3150). You can also "
     "refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors."),
]


def data_answer(first_accepted: str) -> str:
    """The reply at the end of DATA when the first accepted recipient names a refusal."""
    local = first_accepted.split("@", 1)[0].lower()
    for prefix, answer in DATA_ANSWERS:
        if local.startswith(prefix):
            return answer.format(address=first_accepted)
    return ""


KEPT = itertools.count(1)


async def session(reader, writer, name: str, size_limit: int, keep: str) -> None:
    async def say(reply: str) -> None:
        for line in reply.split("\n"):
            writer.write(line.encode() + b"\r\n")
        await writer.drain()

    await say(f"220 {name} ESMTP")
    accepted = 0
    first_accepted = ""
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
                address = found.group(1) if found else ""
                answer = rcpt_answer(address)
                if answer.startswith("250"):
                    first_accepted = first_accepted if accepted else address
                    accepted += 1
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
                refusal = data_answer(first_accepted)
                if sum(map(len, lines)) > limit:
                    await say("552 5.3.4 Message size exceeds fixed limit")
                elif refusal:
                    await say(refusal)
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
