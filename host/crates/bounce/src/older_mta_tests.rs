//! Older MTAs' free-text notices (qmail, Lotus Domino, Novell GroupWise, MDaemon, Mercury,
//! IMail, Netscape/iPlanet, CompuServe, smail, IIS SMTP, Exchange 2003, X.400 gateways) and
//! messages that are no bounce at all (delay warnings, success notices, read receipts,
//! auto-replies in several languages, challenge-response requests). Each notice is written
//! here in its MTA's manner from how that MTA words a failure generally, not copied from a
//! sample, and carries what a reader of its words concludes: who failed, hard or soft.
//!
//! The figures of the tables are printed (`cargo test -p sluice-bounce older_mta --
//! --nocapture`) and recorded in docs/bounce-classification.md: the tables were scored
//! before any rule was written for them.

use super::*;

/// What a reader of a notice's words concludes for one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// The address will fail again.
    Hard,
    /// Temporary, or about this message or sender.
    Soft,
    /// An "unknown user" that no code, command, directory's or lookup's words confirm
    /// (IMail's "Unknown user:", Mercury's, GroupWise's "user not found", smail's): a reader
    /// of the notice alone would say hard, but the documented rule reads it as `filtered`
    /// (soft), as the reference labels such notices (making them hard was tried: the whole
    /// corpus fell from 98.0 % to 95.7 %). Checked as filtered; counted apart.
    Unconfirmed,
}

use Expect::{Hard, Soft, Unconfirmed};

/// One notice: what it is, who failed, and what a reader concludes for each.
struct Notice {
    name: &'static str,
    raw: &'static str,
    /// The failed recipients and the verdict on each.
    failed: &'static [(&'static str, Expect)],
}

const NOTICES: &[Notice] = &[
    Notice {
        name: "qmail: an address deleted by its owner, no code",
        raw: "From: MAILER-DAEMON@mx.example.org\nTo: shop@example.com\nSubject: failure notice\n\n\
Hi. This is the qmail-send program at mx.example.org.\n\
I'm afraid I wasn't able to deliver your message to the following addresses.\n\
This is a permanent error; I've given up. Sorry it didn't work out.\n\n\
<ann@example.net>:\n\
This address no longer accepts mail.\n\n\
--- Below this line is a copy of the message.\n\n\
Return-Path: <shop@example.com>\nFrom: shop@example.com\nTo: ann@example.net\n",
        failed: &[("ann@example.net", Hard)],
    },
    Notice {
        name: "qmail: no host by that name, and a quota in the same notice",
        raw: "From: MAILER-DAEMON@mx.example.org\nTo: shop@example.com\nSubject: failure notice\n\n\
Hi. This is the qmail-send program at mx.example.org.\n\
I'm afraid I wasn't able to deliver your message to the following addresses.\n\
This is a permanent error; I've given up. Sorry it didn't work out.\n\n\
<ann@nowhere.example>:\n\
Sorry, I couldn't find any host named nowhere.example. (#5.1.2)\n\n\
<bob@example.net>:\n\
The users mailfolder is over the allowed quota (size). (#5.2.2)\n\n\
--- Below this line is a copy of the message.\n\n\
Return-Path: <shop@example.com>\nFrom: shop@example.com\n",
        failed: &[("ann@nowhere.example", Hard), ("bob@example.net", Soft)],
    },
    Notice {
        name: "a qmail-based webmail host: an account it does not have, no code",
        raw: "From: MAILER-DAEMON@mta1.mail.example.org\nTo: shop@example.com\nSubject: failure delivery\n\n\
Message from example.org.\n\
Unable to deliver message to the following address(es).\n\n\
<ann@example.org>:\n\
This user doesn't have a example.org account (ann@example.org) [0]\n\n\
<bob@example.org>:\n\
Sorry, your intended recipient has too much mail stored in their mailbox. Please try again later.\n\n\
--- Original message follows.\n\n\
From: shop@example.com\nTo: ann@example.org, bob@example.org\n",
        failed: &[("ann@example.org", Unconfirmed), ("bob@example.org", Soft)],
    },
    Notice {
        name: "IMail: unknown user, the reporting server's own verdict, no code",
        raw: "From: Mail Delivery Subsystem <postmaster@mail.example.net>\nTo: shop@example.com\nSubject: Undeliverable Mail\n\n\
Unknown user: ann@example.net\n\n\
Original message follows.\n\n\
Received: from client.example.com by mail.example.net (IMail)\nFrom: shop@example.com\nTo: ann@example.net\n",
        failed: &[("ann@example.net", Unconfirmed)],
    },
    Notice {
        name: "IMail: delivery given up after many attempts",
        raw: "From: postmaster@mail.example.org\nTo: shop@example.com\nSubject: Undeliverable Mail\n\n\
Delivery failed 20 attempts: ann@example.net\n\n\
Original message follows.\n\n\
From: shop@example.com\nTo: ann@example.net\n",
        failed: &[("ann@example.net", Soft)],
    },
    Notice {
        name: "MDaemon: session transcript, the remote's refusal at RCPT",
        raw: "From: MDaemon@mail.example.org\nTo: shop@example.com\nSubject: Permanent Delivery Failure\n\n\
The attached message had PERMANENT fatal delivery errors!\n\n\
After one or more unsuccessful delivery attempts the attached message has been removed\n\
from the mail queue on this server. The number and frequency of delivery attempts are\n\
determined by local configuration parameters.\n\n\
YOU DO NOT NEED TO RESEND YOUR MESSAGE TO ALL RECIPIENTS AGAIN.\n\n\
--- Session Transcript ---\n\
\x20Mon 2020-01-06 10:00:00: Parsing message <mail.example.org\\pd50000000001.msg>\n\
\x20Mon 2020-01-06 10:00:00: *  From: shop@example.com\n\
\x20Mon 2020-01-06 10:00:00: *  To: ann@example.net\n\
\x20Mon 2020-01-06 10:00:00: Attempting SMTP connection to [mx.example.net : 25]\n\
\x20Mon 2020-01-06 10:00:01: --> MAIL From:<shop@example.com>\n\
\x20Mon 2020-01-06 10:00:01: <-- 250 2.1.0 Ok\n\
\x20Mon 2020-01-06 10:00:01: --> RCPT To:<ann@example.net>\n\
\x20Mon 2020-01-06 10:00:01: <-- 550 5.1.1 <ann@example.net>: Recipient address rejected: User unknown\n\
--- End Transcript ---\n",
        failed: &[("ann@example.net", Hard)],
    },
    Notice {
        name: "Mercury: the recipient's line, then the local verdict",
        raw: "From: MAILER-DAEMON@mail.example.org\nTo: shop@example.com\nSubject: Delivery failure\n\n\
This message is a notification of a delivery failure.\n\
The following recipients could not be reached:\n\n\
\x20  ann@example.org\n\
\x20     Unknown user or mailbox.\n\n\
\x20  bob@example.org\n\
\x20     Mailbox full - message rejected.\n\n\
--- Original message follows:\n\n\
From: shop@example.com\nTo: ann@example.org, bob@example.org\n",
        failed: &[("ann@example.org", Unconfirmed), ("bob@example.org", Soft)],
    },
    Notice {
        name: "Netscape/iPlanet: reason first, recipients after, a postmaster to write to",
        raw: "From: Mail Administrator <Postmaster@example.net>\nTo: shop@example.com\nSubject: Mail System Error - Returned Mail\n\n\
This Message was undeliverable due to the following reason:\n\n\
The user(s) account is temporarily over quota.\n\n\
<ann@example.net>\n\n\
Please reply to Postmaster@example.net\n\
if you feel this message to be in error.\n",
        failed: &[("ann@example.net", Soft)],
    },
    Notice {
        name: "Netscape/iPlanet: Recipient / Reason pairs from a remote's answer",
        raw: "From: Mail Administrator <Postmaster@example.org>\nTo: shop@example.com\nSubject: Mail System Error - Returned Mail\n\n\
This Message was undeliverable due to the following reason:\n\n\
Each of the following recipients was rejected by a remote mail server.\n\
The reasons given by the server are included to help you determine why\n\
each recipient was rejected.\n\n\
\x20   Recipient: <ann@example.net>\n\
\x20   Reason:    <ann@example.net>... User unknown\n\n\
\x20   Recipient: <bob@example.net>\n\
\x20   Reason:    <bob@example.net>... Mailbox disk quota exceeded\n\n\
Please reply to Postmaster@example.org\n\
if you feel this message to be in error.\n",
        failed: &[("ann@example.net", Unconfirmed), ("bob@example.net", Soft)],
    },
    Notice {
        name: "Netscape: the destination was not reachable within the queue period",
        raw: "From: Mail Administrator <Postmaster@example.org>\nTo: shop@example.com\nSubject: Mail System Error - Returned Mail\n\n\
This Message was undeliverable due to the following reason:\n\n\
Your message was not delivered because the destination computer was\n\
not reachable within the allowed queue period. The amount of time\n\
a message is queued before it is returned depends on local configura-\n\
tion parameters.\n\n\
The following recipients did not receive this message:\n\n\
\x20    <ann@example.net>\n",
        failed: &[("ann@example.net", Soft)],
    },
    Notice {
        name: "CompuServe: invalid receiver address",
        raw: "From: CompuServe Postmaster <postmaster@compuserve.example>\nTo: shop@example.com\nSubject: Undeliverable Message\n\n\
Your message could not be delivered for the following reason:\n\n\
Invalid receiver address: 70000.1234@compuserve.example\n",
        failed: &[("70000.1234@compuserve.example", Hard)],
    },
    Notice {
        name: "smail: failed addresses between bars",
        raw: "From: MAILER-DAEMON@mx.example.org\nTo: shop@example.com\nSubject: mail failed, returning to sender\n\n\
|------------------------- Failed addresses follow: ---------------------|\n\
\x20<ann@example.org> ... unknown user\n\
|------------------------- Message text follows: ------------------------|\n\
From: shop@example.com\nTo: ann@example.org\n",
        failed: &[("ann@example.org", Unconfirmed)],
    },
    Notice {
        name: "IIS SMTP: forwarded more than the allowed times (a loop)",
        raw: "From: postmaster@relay.example.org\nTo: shop@example.com\nSubject: Delivery Status Notification (Failure)\n\n\
This is an automatically generated Delivery Status Notification.\n\n\
Unable to deliver message to the following recipients, because the message was forwarded\n\
more than the maximum allowed times. This could indicate a mail loop.\n\n\
\x20      ann@example.net\n",
        failed: &[("ann@example.net", Soft)],
    },
    Notice {
        name: "Exchange 2000: the following message to <mailto:> was undeliverable",
        raw: "From: postmaster@example.org\nTo: shop@example.com\nSubject: Undeliverable: Offer\n\n\
The following message to <mailto:ann@example.net> was undeliverable.\n\
The reason for the problem:\n\
5.1.0 - Unknown address error 550-'<ann@example.net>... No such user'\n",
        failed: &[("ann@example.net", Hard)],
    },
    Notice {
        name: "Exchange 2003: account does not exist, with its #5.1.1 tag",
        raw: "From: System Administrator <postmaster@example.org>\nTo: shop@example.com\nSubject: Undeliverable: Offer\n\n\
Your message did not reach some or all of the intended recipients.\n\n\
\x20     Subject:\tOffer\n\
\x20     Sent:\t1/6/2020 10:00 AM\n\n\
The following recipient(s) could not be reached:\n\n\
\x20     ann@example.net on 1/6/2020 10:00 AM\n\
\x20           The e-mail account does not exist at the organization this message was sent to.  Check the e-mail address, or contact the recipient directly to find out the correct address.\n\
\x20           <mx.example.org #5.1.1>\n\n\
\x20     bob@example.net on 1/6/2020 10:00 AM\n\
\x20           The recipient's mailbox is full and can't accept messages now.  Please try resending this message later, or contact the recipient directly.\n\
\x20           <mx.example.org #5.2.2>\n",
        failed: &[("ann@example.net", Hard), ("bob@example.net", Soft)],
    },
    Notice {
        name: "Exchange 5.5: recipient name not recognized, MSEXCH diagnostic",
        raw: "From: System Administrator <postmaster@example.org>\nTo: shop@example.com\nSubject: Undeliverable: Offer\n\n\
Your message\n\n\
\x20 To:      ann@example.net\n\
\x20 Subject: Offer\n\
\x20 Sent:    Mon, 6 Jan 2020 10:00:00 +0100\n\n\
did not reach the following recipient(s):\n\n\
ann@example.net on Mon, 6 Jan 2020 10:00:00 +0100\n\
\x20   The recipient name is not recognized\n\
\tThe MTS-ID of the original message is: c=us;a= ;p=example;l=MAIL0120010609000000\n\
\x20   MSEXCH:IMS:Example:Site:MAIL 0 (000C05A6) Unknown Recipient\n",
        failed: &[("ann@example.net", Hard)],
    },
    Notice {
        name: "Lotus Domino: router could not find a route to the domain",
        raw: "From: Postmaster@notes.example.org\nTo: shop@example.com\nSubject: DELIVERY FAILURE: No route found to domain\n\n\
Your message\n\n\
\x20 Subject: Offer\n\n\
was not delivered to:\n\n\
\x20 ann@nowhere.example\n\n\
because:\n\n\
\x20 No route found to domain nowhere.example from server MAIL01/Example. Check Server, Connection and Domain documents in Domino Directory.\n",
        failed: &[("ann@nowhere.example", Hard)],
    },
    Notice {
        name: "Lotus Domino: the mail file is over its quota",
        raw: "From: Postmaster@notes.example.org\nTo: shop@example.com\nSubject: DELIVERY FAILURE: Unable to deliver message\n\n\
Your message\n\n\
\x20 Subject: Offer\n\n\
was not delivered to:\n\n\
\x20 ann@example.org\n\n\
because:\n\n\
\x20 Unable to deliver message to ann@example.org: mail file exceeds quota.\n",
        failed: &[("ann@example.org", Soft)],
    },
    Notice {
        name: "GroupWise: addresses with the reason in parentheses, two recipients",
        raw: "From: Mail Delivery System <postmaster@gw.example.org>\nTo: shop@example.com\nSubject: Message status - undeliverable\n\n\
The message that you sent was undeliverable to the following:\n\
\tann@example.org (user not found)\n\
\tbob@example.org (mailbox full)\n\n\
Possibly truncated original message follows:\n\n\
From: shop@example.com\nTo: ann@example.org, bob@example.org\n",
        failed: &[("ann@example.org", Unconfirmed), ("bob@example.org", Soft)],
    },
    Notice {
        name: "X.400 gateway: unrecognised O/R name",
        raw: "From: X400 Gateway <postmaster@x400.example.org>\nTo: shop@example.com\nSubject: Non delivery report: Offer\n\n\
Your message was not delivered.\n\n\
Recipient: ann@example.org\n\
Reason: Unable to transfer\n\
Diagnostic: Unrecognised O/R name\n",
        failed: &[("ann@example.org", Hard)],
    },
    Notice {
        name: "X.400 gateway: maximum time expired",
        raw: "From: X400 Gateway <postmaster@x400.example.org>\nTo: shop@example.com\nSubject: Non delivery report: Offer\n\n\
Your message was not delivered.\n\n\
Recipient: ann@example.org\n\
Reason: Unable to transfer\n\
Diagnostic: Maximum time expired\n",
        failed: &[("ann@example.org", Soft)],
    },
    Notice {
        name: "Hotmail-era Exchange: several recipients, no words per recipient",
        raw: "From: postmaster@example.org\nTo: shop@example.com\nSubject: Delivery Status Notification (Failure)\n\n\
This is an automatically generated Delivery Status Notification.\n\n\
Delivery to the following recipients failed.\n\n\
\x20      ann@example.org\n\
\x20      bob@example.org\n",
        failed: &[("ann@example.org", Soft), ("bob@example.org", Soft)],
    },
    Notice {
        name: "Sendmail: a host it cannot name, in a free-text notice",
        raw: "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.org>\nTo: shop@example.com\nSubject: Returned mail: Host unknown (Name server: nowhere.example: host not found)\n\n\
The original message was received at Mon, 6 Jan 2020 10:00:00 GMT\n\
from client.example.com [192.0.2.9]\n\n\
\x20  ----- The following addresses had permanent fatal errors -----\n\
<ann@nowhere.example>\n\n\
\x20  ----- Transcript of session follows -----\n\
550 5.1.2 <ann@nowhere.example>... Host unknown (Name server: nowhere.example: host not found)\n",
        failed: &[("ann@nowhere.example", Hard)],
    },
    Notice {
        name: "Sendmail: given up after five days",
        raw: "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.org>\nTo: shop@example.com\nSubject: Returned mail: Cannot send message for 5 days\n\n\
The original message was received at Mon, 6 Jan 2020 10:00:00 GMT\n\
from client.example.com [192.0.2.9]\n\n\
\x20  ----- The following addresses had permanent fatal errors -----\n\
<ann@example.net>\n\n\
\x20  ----- Transcript of session follows -----\n\
421 example.net.: Deferred: Connection timed out with mx.example.net.\n\
Message could not be delivered for 5 days\n\
Message will be deleted from queue\n",
        failed: &[("ann@example.net", Soft)],
    },
    Notice {
        name: "a Sendmail-era free-text unknown user, the MTA's own local delivery",
        raw: "From: Mail Delivery Subsystem <MAILER-DAEMON@example.org>\nTo: shop@example.com\nSubject: Returned mail: User unknown\n\n\
The original message was received at Mon, 6 Jan 2020 10:00:00 GMT\n\
from client.example.com [192.0.2.9]\n\n\
\x20  ----- The following addresses had permanent fatal errors -----\n\
ann\n\n\
\x20  ----- Transcript of session follows -----\n\
550 ann... User unknown\n\n\
\x20  ----- Original message follows -----\n\
From: shop@example.com\nTo: ann@example.org\n",
        failed: &[("ann@example.org", Unconfirmed)],
    },
    Notice {
        name: "a mail store's own words: mailbox not found, no code, free text",
        raw: "From: MAILER-DAEMON@mail.example.org\nTo: shop@example.com\nSubject: Undelivered Mail\n\n\
Your message could not be delivered.\n\n\
ann@example.org: mailbox not found\n",
        failed: &[("ann@example.org", Hard)],
    },
    Notice {
        name: "a notice naming its reporting host's postmaster and the sender in the text",
        raw: "From: MAILER-DAEMON@mx.example.org\nTo: shop@example.com\nSubject: Undeliverable mail\n\n\
Your message from shop@example.com could not be delivered to ann@example.net\n\
because the recipient's mailbox is disabled.\n\
For assistance write to postmaster@mx.example.org.\n",
        failed: &[("ann@example.net", Soft)],
    },
    Notice {
        name: "Lotus Notes: a Notes name in the list, the Internet address in the reason",
        raw: "From: Postmaster@notes.example.org\nTo: shop@example.com\nSubject: DELIVERY FAILURE: User Ann Doe (ann@example.org) not listed in Domino Directory\n\n\
Your message\n\n\
\x20 Subject: Offer\n\n\
was not delivered to:\n\n\
\x20 Ann Doe/Sales/Example@EXAMPLE\n\n\
because:\n\n\
\x20 User Ann Doe (ann@example.org) not listed in Domino Directory\n",
        failed: &[("ann@example.org", Hard)],
    },
    Notice {
        name: "Exchange 2003 in German: the same layout in another language",
        raw: "From: Systemadministrator <postmaster@example.de>\nTo: shop@example.com\nSubject: Unzustellbar: Angebot\n\n\
Ihre Nachricht hat einige oder alle Empf\u{e4}nger nicht erreicht.\n\n\
\x20     Betreff:\tAngebot\n\
\x20     Gesendet:\t06.01.2020 10:00\n\n\
Folgende(r) Empf\u{e4}nger konnte(n) nicht erreicht werden:\n\n\
\x20     ann@example.de am 06.01.2020 10:00\n\
\x20           Das E-Mail-Konto existiert nicht bei der Organisation, an die diese Nachricht gesendet wurde.\n\
\x20           <mx.example.de #5.1.1>\n",
        failed: &[("ann@example.de", Hard)],
    },
    Notice {
        name: "a French gateway's sentence: remis \u{e0} the recipient, signed by its postmaster",
        raw: "From: Postmaster <postmaster@example.fr>\nTo: shop@example.com\nSubject: Message non remis\n\n\
Votre message n'a pas pu \u{ea}tre remis \u{e0} ann@example.fr : bo\u{ee}te aux lettres pleine.\n\
Pour toute question, \u{e9}crivez \u{e0} postmaster@example.fr.\n",
        failed: &[("ann@example.fr", Soft)],
    },
    Notice {
        name: "an old AOL-era Sendmail list in capitals",
        raw: "From: Mail Delivery Subsystem <MAILER-DAEMON@aol.example>\nTo: shop@example.com\nSubject: Returned mail: User unknown\n\n\
The original message was received at Mon, 6 Jan 2020 10:00:00 -0500 (EST)\n\
from client.example.com [192.0.2.9]\n\n\
\x20  ----- The following addresses had permanent fatal errors -----\n\
ANN@AOL.EXAMPLE\n\
BOB@AOL.EXAMPLE\n\n\
\x20  ----- Transcript of session follows -----\n\
... while talking to air.aol.example.:\n\
>>> RCPT To:<ANN@AOL.EXAMPLE>\n\
<<< 550 MAILBOX NOT FOUND\n\
550 ANN@AOL.EXAMPLE... User unknown\n\
>>> RCPT To:<BOB@AOL.EXAMPLE>\n\
<<< 550 MAILBOX NOT FOUND\n\
550 BOB@AOL.EXAMPLE... User unknown\n",
        failed: &[("ann@aol.example", Hard), ("bob@aol.example", Hard)],
    },
    Notice {
        name: "a notice naming the recipient only in its subject",
        raw: "From: MAILER-DAEMON@mail.example.org\nTo: shop@example.com\nSubject: Undeliverable mail to ann@example.org\n\n\
Your message could not be delivered: the mailbox is full.\n",
        failed: &[("ann@example.org", Soft)],
    },
    Notice {
        name: "qmail quoting the sender in the remote's answer",
        raw: "From: MAILER-DAEMON@mx.example.org\nTo: shop@example.com\nSubject: failure notice\n\n\
Hi. This is the qmail-send program at mx.example.org.\n\
I'm afraid I wasn't able to deliver your message to the following addresses.\n\
This is a permanent error; I've given up. Sorry it didn't work out.\n\n\
<ann@example.net>:\n\
192.0.2.1 failed after I sent the message.\n\
Remote host said: 554 5.7.1 <shop@example.com>: Sender address rejected: Access denied\n\n\
--- Below this line is a copy of the message.\n\n\
Return-Path: <shop@example.com>\nFrom: shop@example.com\nTo: ann@example.net\n",
        failed: &[("ann@example.net", Soft)],
    },
    Notice {
        name: "X.400 gateway in RFC 1327 style: RFC-822 recipient and reason lines",
        raw: "From: postmaster@x400.example.org\nTo: shop@example.com\nSubject: Delivery Report (failure) for ann@example.org\n\n\
This report relates to your message:\n\
Subject: Offer\n\n\
Your message was not delivered to:\n\
\x20       ann@example.org\n\
for the following reason:\n\
\x20       Unable to transfer\n\
\x20       Unrecognised O/R name\n",
        failed: &[("ann@example.org", Hard)],
    },
    Notice {
        name: "a German gateway's own sentence, from the null sender, no code",
        raw: "From: E-Mail-Gateway <gateway@example.de>\nReturn-Path: <>\nTo: shop@example.com\nSubject: Fehler bei der Zustellung\n\n\
Ihre Nachricht an anna@example.de konnte nicht zugestellt werden: Postfach voll.\n",
        failed: &[("anna@example.de", Soft)],
    },
];

/// One message that is no bounce: what it is, and what it must be read as.
struct NotBounce {
    name: &'static str,
    raw: &'static str,
    /// The kinds it may be read as (a delay warning is a bounce with `Action: delayed`).
    kinds: &'static [Kind],
}

const NOT_BOUNCES: &[NotBounce] = &[
    NotBounce {
        name: "Sendmail's warning: could not send for past 4 hours",
        raw: "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.org>\nTo: shop@example.com\nSubject: Warning: could not send message for past 4 hours\n\n\
\x20   **********************************************\n\
\x20   **      THIS IS A WARNING MESSAGE ONLY      **\n\
\x20   **  YOU DO NOT NEED TO RESEND YOUR MESSAGE  **\n\
\x20   **********************************************\n\n\
The original message was received at Mon, 6 Jan 2020 10:00:00 GMT\n\n\
\x20  ----- Transcript of session follows -----\n\
<ann@example.net>... Deferred: Connection refused by mx.example.net.\n\
Warning: message still undelivered after 4 hours\n\
Will keep trying until message is 5 days old\n",
        kinds: &[Kind::Bounce],
    },
    NotBounce {
        name: "Exchange's delay notice: delivery has been delayed",
        raw: "From: postmaster@example.org\nTo: shop@example.com\nSubject: Delivery Status Notification (Delay)\n\n\
This is an automatically generated Delivery Status Notification.\n\n\
THIS IS A WARNING MESSAGE ONLY.\n\n\
YOU DO NOT NEED TO RESEND YOUR MESSAGE.\n\n\
Delivery to the following recipients has been delayed.\n\n\
\x20      ann@example.net\n",
        kinds: &[Kind::Bounce],
    },
    NotBounce {
        name: "Lotus Domino's delay report",
        raw: "From: Postmaster@notes.example.org\nTo: shop@example.com\nSubject: DELIVERY DELAYED: Offer\n\n\
Your message\n\n\
\x20 Subject: Offer\n\n\
has not been delivered to:\n\n\
\x20 ann@example.org\n\n\
because the destination server is not responding. Delivery will be retried.\n",
        kinds: &[Kind::Bounce],
    },
    NotBounce {
        name: "a delayed DSN (multipart/report)",
        raw: "From: MAILER-DAEMON@mx.example.org\nTo: shop@example.com\nSubject: Delayed Mail (still being retried)\n\
MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\n\
--b\nContent-Type: text/plain\n\nThis is a warning only.\n\n\
--b\nContent-Type: message/delivery-status\n\n\
Reporting-MTA: dns; mx.example.org\n\n\
Final-Recipient: rfc822; ann@example.net\nAction: delayed\nStatus: 4.4.1\n\
Diagnostic-Code: smtp; 421 4.4.1 connection timed out\n\n--b--\n",
        kinds: &[Kind::Bounce],
    },
    NotBounce {
        name: "a relayed DSN",
        raw: "From: MAILER-DAEMON@mx.example.org\nTo: shop@example.com\nSubject: Successful Mail Delivery Report\n\
MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\n\
--b\nContent-Type: text/plain\n\nYour message was successfully relayed to the following recipient.\n\n\
--b\nContent-Type: message/delivery-status\n\n\
Reporting-MTA: dns; mx.example.org\n\n\
Final-Recipient: rfc822; ann@example.net\nAction: relayed\nStatus: 2.0.0\n\n--b--\n",
        kinds: &[Kind::DeliveryReport],
    },
    NotBounce {
        name: "Exchange's free-text delivery receipt with the original's headers",
        raw: "From: postmaster@example.org\nTo: shop@example.com\nSubject: Delivered: Offer\n\n\
Your message\n\n\
\x20 To: ann@example.org\n\
\x20 Subject: Offer\n\n\
was delivered to the following recipient(s):\n\n\
ann@example.org on 1/6/2020 10:00 AM\n\n\
--- Original message headers follow ---\n\
Return-Path: <shop@example.com>\nFrom: shop@example.com\nTo: ann@example.org\n",
        kinds: &[Kind::DeliveryReport, Kind::NotABounce],
    },
    NotBounce {
        name: "a read receipt (message/disposition-notification)",
        raw: "From: Ann <ann@example.net>\nTo: shop@example.com\nSubject: Read: Offer\n\
MIME-Version: 1.0\nContent-Type: multipart/report; report-type=disposition-notification; boundary=\"b\"\n\n\
--b\nContent-Type: text/plain\n\nYour message was read on Monday.\n\n\
--b\nContent-Type: message/disposition-notification\n\n\
Reporting-UA: mail.example.net\nFinal-Recipient: rfc822; ann@example.net\n\
Disposition: manual-action/MDN-sent-manually; displayed\n\n--b--\n",
        kinds: &[Kind::DeliveryReport, Kind::NotABounce],
    },
    NotBounce {
        name: "a deleted-unread receipt",
        raw: "From: Ann <ann@example.net>\nTo: shop@example.com\nSubject: Not read: Offer\n\
MIME-Version: 1.0\nContent-Type: multipart/report; report-type=disposition-notification; boundary=\"b\"\n\n\
--b\nContent-Type: text/plain\n\nYour message was deleted without being read.\n\n\
--b\nContent-Type: message/disposition-notification\n\n\
Reporting-UA: mail.example.net\nFinal-Recipient: rfc822; ann@example.net\n\
Disposition: manual-action/MDN-sent-manually; deleted\n\n--b--\n",
        kinds: &[Kind::DeliveryReport, Kind::NotABounce],
    },
    NotBounce {
        name: "French out-of-office without automatic-reply headers",
        raw: "From: Anne <anne@example.fr>\nTo: shop@example.com\nSubject: Absence du bureau\n\n\
Bonjour, je suis absente jusqu'au 15 janvier. Votre message ne sera pas lu avant mon retour.\n",
        kinds: &[Kind::Autoreply],
    },
    NotBounce {
        name: "Spanish out-of-office",
        raw: "From: Ana <ana@example.es>\nTo: shop@example.com\nSubject: Fuera de la oficina: Oferta\n\n\
Estoy fuera de la oficina hasta el lunes. Su mensaje no pudo ser leído.\n",
        kinds: &[Kind::Autoreply],
    },
    NotBounce {
        name: "German out-of-office that quotes the original",
        raw: "From: Anna <anna@example.de>\nTo: shop@example.com\nSubject: Abwesenheitsnotiz: Angebot\nAuto-Submitted: auto-replied\n\n\
Ich bin bis 10. Januar nicht im Büro. Ihre Nachricht wird nicht weitergeleitet.\n\n\
-----Ursprüngliche Nachricht-----\nFrom: shop@example.com\nTo: anna@example.de\nSubject: Angebot\n",
        kinds: &[Kind::Autoreply],
    },
    NotBounce {
        name: "Italian and Portuguese out-of-office subjects",
        raw: "From: Anna <anna@example.it>\nTo: shop@example.com\nSubject: Fuori ufficio / Ausência temporária\n\n\
Sono fuori ufficio fino al 10 gennaio.\n",
        kinds: &[Kind::Autoreply],
    },
    NotBounce {
        name: "a challenge-response request holding the message",
        raw: "From: ann@example.net\nTo: shop@example.com\nSubject: Please confirm your message (verification required)\n\
Auto-Submitted: auto-replied\n\n\
Hello, I am protecting my inbox from spam. Your message to ann@example.net has been held\n\
and will be delivered once you confirm that you are a person. Please click the link below\n\
to complete the verification:\n\
https://verify.example.net/confirm?id=12345\n\n\
--- Original message follows ---\nFrom: shop@example.com\nTo: ann@example.net\nSubject: Offer\n",
        kinds: &[Kind::Autoreply, Kind::NotABounce],
    },
    NotBounce {
        name: "a challenge-response request from the mail system, undelivered until confirmed",
        raw: "From: Spam Filter <mailer-daemon@filter.example.net>\nTo: shop@example.com\nSubject: Your message to ann@example.net requires confirmation\n\n\
The recipient uses a challenge-response spam filter. Your message has not yet been delivered:\n\
to confirm that you sent it, reply to this message or visit\n\
https://filter.example.net/confirm/abcdef\n\
Unconfirmed messages are deleted after 7 days.\n",
        kinds: &[Kind::Autoreply, Kind::NotABounce],
    },
    NotBounce {
        name: "a recipient complaining about content to the sender",
        raw: "From: Ann <ann@example.net>\nTo: shop@example.com\nSubject: Re: Offer\n\n\
I never asked for this. Your message was unsolicited; stop sending me these offers.\n\n\
> Offer of the week\n",
        kinds: &[Kind::NotABounce],
    },
    NotBounce {
        name: "a person forwarding a bounce they received",
        raw: "From: Ann <ann@example.net>\nTo: shop@example.com\nSubject: Fwd: Undelivered Mail Returned to Sender\n\n\
FYI, I got this back when I wrote to Bob.\n\n\
---------- Forwarded message ----------\n\
From: MAILER-DAEMON@mx.example.net\n\
Subject: Undelivered Mail Returned to Sender\n\n\
<bob@example.org>: host mx.example.org said: 550 5.1.1 User unknown\n",
        kinds: &[Kind::NotABounce],
    },
    NotBounce {
        name: "a person replying to a failure notice",
        raw: "From: Ann <ann@example.net>\nTo: shop@example.com\nSubject: Re: Delivery Status Notification (Failure)\n\n\
Why did my message to you fail? Please check your mail server.\n",
        kinds: &[Kind::NotABounce],
    },
    NotBounce {
        name: "a parcel service's notice that a parcel could not be delivered",
        raw: "From: Parcel Service <noreply@parcels.example>\nTo: shop@example.com\nSubject: Delivery failed: your parcel 1Z999 could not be delivered\n\n\
We tried to deliver your parcel today but nobody was at home. Please book a new delivery date\n\
at https://parcels.example/track/1Z999.\n",
        kinds: &[Kind::NotABounce],
    },
];

#[test]
fn older_mtas_notices_yield_their_recipients_and_classes() {
    let (mut recipients, mut agreed, mut total, mut unconfirmed) = (0, 0, 0, 0);
    let mut wrong = Vec::new();
    for notice in NOTICES {
        let report = classify_message(notice.raw.as_bytes());
        for (address, expect) in notice.failed {
            total += 1;
            let verdict = report
                .recipients
                .iter()
                .find(|v| v.recipient.as_deref() == Some(address));
            let Some(verdict) = verdict.filter(|_| report.kind == Kind::Bounce) else {
                wrong.push(format!(
                    "{}: {address} not found ({} {:?})",
                    notice.name,
                    report.kind.as_str(),
                    report
                        .recipients
                        .iter()
                        .map(|v| v.recipient.as_deref())
                        .collect::<Vec<_>>()
                ));
                continue;
            };
            recipients += 1;
            let right = match expect {
                Hard => verdict.class == Some(Class::Hard),
                Soft => verdict.class == Some(Class::Soft),
                Unconfirmed => {
                    unconfirmed += 1;
                    verdict.reason == Reason::Filtered && verdict.class == Some(Class::Soft)
                }
            };
            if right {
                agreed += u32::from(*expect != Unconfirmed);
            } else {
                wrong.push(format!(
                    "{}: {address} {:?}, expected {expect:?} ({}; read {:?})",
                    notice.name,
                    verdict.class,
                    verdict.explanation.sentence(verdict.reason, verdict.class),
                    verdict.diagnostic
                ));
            }
        }
        let extra: Vec<_> = report
            .recipients
            .iter()
            .filter_map(|v| v.recipient.as_deref())
            .filter(|found| !notice.failed.iter().any(|(a, _)| a == found))
            .collect();
        if !extra.is_empty() {
            wrong.push(format!("{}: not failed, but taken: {extra:?}", notice.name));
        }
    }
    println!(
        "older MTAs' notices: recipients {recipients}/{total}, hard/soft {agreed}/{} \
         (and {unconfirmed} unconfirmed unknown users read as filtered, soft)",
        total - unconfirmed
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn older_mta_era_non_bounces_are_left_alone() {
    let mut wrong = Vec::new();
    for message in NOT_BOUNCES {
        let report = classify_message(message.raw.as_bytes());
        let hard = report
            .recipients
            .iter()
            .any(|v| v.class == Some(Class::Hard));
        let delayed = report.kind != Kind::Bounce
            || report
                .recipients
                .iter()
                .all(|v| v.action.as_deref() == Some("delayed"));
        if !message.kinds.contains(&report.kind) || hard || !delayed {
            wrong.push(format!(
                "{}: {} {:?}",
                message.name,
                report.kind.as_str(),
                report
                    .recipients
                    .iter()
                    .map(|v| (v.recipient.as_deref(), v.action.as_deref(), v.class))
                    .collect::<Vec<_>>()
            ));
        }
    }
    println!(
        "older-era non-bounces left alone: {}/{}",
        NOT_BOUNCES.len() - wrong.len(),
        NOT_BOUNCES.len()
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A one-recipient DSN whose remote answered with `diagnostic`, naming no command (as
/// Haraka's, many gateways' and older MTAs' reports do).
fn remote_answer(status: &str, diagnostic: &str) -> Report {
    classify_message(
        format!(
            "From: MAILER-DAEMON@mx.example.org\r\n\
             Subject: Delivery Status Notification\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\
             \r\n\
             --B\r\n\
             Content-Type: text/plain\r\n\
             \r\n\
             Your message could not be delivered.\r\n\
             --B\r\n\
             Content-Type: message/delivery-status\r\n\
             \r\n\
             Reporting-MTA: dns; mx.example.org\r\n\
             \r\n\
             Final-Recipient: rfc822; ann@example.net\r\n\
             Action: failed\r\n\
             Status: {status}\r\n\
             Remote-MTA: dns; mx.example.net\r\n\
             Diagnostic-Code: smtp; {diagnostic}\r\n\
             --B--\r\n"
        )
        .as_bytes(),
    )
}

/// General MTA wording where the status code and the words may disagree, with no command
/// named: the reason comes from the words where they name one (an address code is many
/// receivers' catch-all), and an "unknown user" is hard only when something confirms it (a
/// lookup's own words such as "recipient does not exist", "mailbox not found").
#[test]
fn general_wordings_decide_by_reason_and_code_together() {
    let cases: &[(&str, &str, Reason, Class)] = &[
        (
            "5.1.1",
            "550 5.1.1 Mailbox full",
            Reason::MailboxFull,
            Class::Soft,
        ),
        (
            "5.1.1",
            "550 5.1.1 user over quota",
            Reason::MailboxFull,
            Class::Soft,
        ),
        (
            "5.1.1",
            "550 5.1.1 Message rejected for policy reasons",
            Reason::PolicyViolation,
            Class::Soft,
        ),
        (
            "5.1.1",
            "550 5.1.1 Message blocked due to spam content",
            Reason::SpamDetected,
            Class::Soft,
        ),
        (
            "5.1.1",
            "550 5.1.1 Account disabled",
            Reason::Suspend,
            Class::Soft,
        ),
        (
            "5.1.1",
            "550 5.1.1 Relaying denied",
            Reason::NoRelaying,
            Class::Soft,
        ),
        (
            "5.2.1",
            "550 5.2.1 The email account that you tried to reach is disabled",
            Reason::Suspend,
            Class::Soft,
        ),
        (
            "5.0.0",
            "550 Recipient does not exist",
            Reason::UserUnknown,
            Class::Hard,
        ),
        (
            "5.0.0",
            "550 Address does not exist",
            Reason::UserUnknown,
            Class::Hard,
        ),
        (
            "5.0.0",
            "550 Mailbox not found",
            Reason::UserUnknown,
            Class::Hard,
        ),
        (
            "5.0.0",
            "550 Invalid receiver address",
            Reason::UserUnknown,
            Class::Hard,
        ),
        (
            "5.0.0",
            "550 No mailbox here by that name",
            Reason::UserUnknown,
            Class::Hard,
        ),
        (
            "5.0.0",
            "552 Postfach voll",
            Reason::MailboxFull,
            Class::Soft,
        ),
        (
            "5.0.0",
            "552 Boîte aux lettres pleine",
            Reason::MailboxFull,
            Class::Soft,
        ),
        ("5.0.0", "552 Buzón lleno", Reason::MailboxFull, Class::Soft),
        (
            "5.0.0",
            "550 mailbox for ann@example.net does not exist",
            Reason::UserUnknown,
            Class::Hard,
        ),
        (
            "5.0.0",
            "550 This address has been replaced by <new@example.net>",
            Reason::HasMoved,
            Class::Hard,
        ),
        // Postfix's table lookup quoted with no command named: a gateway that had accepted
        // the message may quote it (the reference labels that `filtered`), so it stays unconfirmed.
        (
            "5.0.0",
            "550 User unknown in local recipient table",
            Reason::Filtered,
            Class::Soft,
        ),
        (
            "5.1.10",
            "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient ann@example.net not found by SMTP address lookup",
            Reason::UserUnknown,
            Class::Hard,
        ),
        (
            "5.0.0",
            "550 The email account that you tried to reach does not exist",
            Reason::Filtered,
            Class::Soft,
        ),
        (
            "5.0.0",
            "550 Invalid recipient",
            Reason::UserUnknown,
            Class::Hard,
        ),
        (
            "5.0.0",
            "550 Sorry, no mailbox here by that name. (#5.1.1)",
            Reason::UserUnknown,
            Class::Hard,
        ),
        (
            "5.0.0",
            "551 User not local; please try <ann@other.example>",
            Reason::HasMoved,
            Class::Hard,
        ),
        (
            "5.0.0",
            "550 Unrouteable address",
            Reason::HostUnknown,
            Class::Hard,
        ),
        (
            "5.0.0",
            "550 unknown mailbox",
            Reason::Filtered,
            Class::Soft,
        ),
        (
            "5.0.0",
            "550 No such user here",
            Reason::Filtered,
            Class::Soft,
        ),
        (
            "5.0.0",
            "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
            Reason::Blocked,
            Class::Soft,
        ),
    ];
    let mut wrong = Vec::new();
    for (status, diagnostic, reason, class) in cases {
        let report = remote_answer(status, diagnostic);
        let verdict = &report.recipients[0];
        if verdict.reason != *reason || verdict.class != Some(*class) {
            wrong.push(format!(
                "{status} {diagnostic}: {} {:?}, expected {} {}",
                verdict.reason,
                verdict.class,
                reason,
                class.as_str()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
