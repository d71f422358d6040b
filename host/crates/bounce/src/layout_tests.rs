//! Failed recipients of free-text notices, one minimal notice per layout that MTAs have
//! used for decades (qmail, Sendmail, Exim, Courier, Domino, Exchange, GroupWise,
//! CommuniGate, hMailServer, Microsoft 365, X.400-style gateways). The sentences are written
//! here in each layout's manner, not copied from samples: what is tested is where the
//! addresses stand, so every failed recipient is found and no other address (the notice's
//! sender and addressee, a postmaster, the original's headers, a session transcript's MAIL
//! FROM) is taken for one.

use super::*;

/// One layout: the notice, the failed recipients it names (in any order), and the
/// original addresses it gives for some of them.
struct Layout {
    name: &'static str,
    notice: &'static str,
    failed: &'static [&'static str],
    originals: &'static [(&'static str, &'static str)],
}

const LAYOUTS: &[Layout] = &[
    Layout {
        name: "qmail: <address>: paragraphs, the original's headers after the marker",
        notice: "From: MAILER-DAEMON@mx.example.org\n\
                 To: shop@example.com\n\
                 Subject: failure notice\n\
                 \n\
                 Hi. This is the qmail-send program at mx.example.org.\n\
                 I'm afraid I wasn't able to deliver your message to the following addresses.\n\
                 This is a permanent error; I've given up. Sorry it didn't work out.\n\
                 \n\
                 <ann@example.net>:\n\
                 192.0.2.1 does not like recipient.\n\
                 Remote host said: 550 5.1.1 <ann@example.net>... no such mailbox\n\
                 Giving up on 192.0.2.1.\n\
                 \n\
                 <bob@example.net>:\n\
                 Sorry, no mailbox here by that name. (#5.1.1)\n\
                 \n\
                 --- Below this line is a copy of the message.\n\
                 \n\
                 Return-Path: <shop@example.com>\n\
                 Received: (qmail 4711 invoked from network); 1 Jan 2020 00:00:00 -0000\n\
                 Received: from client.example.com (relay@client.example.com)\n\
                 From: shop@example.com\n\
                 To: ann@example.net, bob@example.net, zoe@example.net\n",
        failed: &["ann@example.net", "bob@example.net"],
        originals: &[],
    },
    Layout {
        name: "Sendmail: permanent fatal errors list, reasons and aliases in parentheses",
        notice: "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.org>\n\
                 To: <shop@example.com>\n\
                 Subject: Returned mail: see transcript for details\n\
                 \n\
                 The original message was received at Mon, 1 Jan 2020 00:00:00 GMT\n\
                 from client.example.com [192.0.2.9]\n\
                 \n\
                 \x20  ----- The following addresses had permanent fatal errors -----\n\
                 <ann@example.net>\n\
                 \x20   (reason: 550 5.1.1 <ann@example.net>... User unknown)\n\
                 \x20   (expanded from: <team@example.org>)\n\
                 <carol@example.net>\n\
                 \x20   (reason: 552 5.2.2 Mailbox full)\n\
                 \n\
                 \x20  ----- Transcript of session follows -----\n\
                 ... while talking to mx.example.net.:\n\
                 >>> MAIL From:<shop@example.com> SIZE=1234\n\
                 <<< 250 2.1.0 <shop@example.com>... Sender ok\n\
                 >>> RCPT To:<ann@example.net>\n\
                 <<< 550 5.1.1 <ann@example.net>... User unknown\n\
                 550 5.1.1 <ann@example.net>... User unknown\n\
                 >>> RCPT To:<carol@example.net>\n\
                 <<< 552 5.2.2 <carol@example.net>... Mailbox full\n\
                 \n\
                 \x20  ----- Original message follows -----\n\
                 Return-Path: <shop@example.com>\n\
                 From: shop@example.com\n\
                 To: team@example.org, carol@example.net\n",
        failed: &["ann@example.net", "carol@example.net"],
        originals: &[("ann@example.net", "team@example.org")],
    },
    Layout {
        name: "Exim without a report part: indented address, then its story",
        notice: "From: Mail Delivery System <Mailer-Daemon@mx.example.org>\n\
                 To: shop@example.com\n\
                 Subject: Mail delivery failed: returning message to sender\n\
                 \n\
                 This message was created automatically by mail delivery software.\n\
                 \n\
                 A message that you sent could not be delivered to one or more of its\n\
                 recipients. This is a permanent error. The following address(es) failed:\n\
                 \n\
                 \x20 ann@example.net\n\
                 \x20   host mx.example.net [192.0.2.1]\n\
                 \x20   SMTP error from remote mail server after RCPT TO:<ann@example.net>:\n\
                 \x20   550 5.1.1 <ann@example.net>: Recipient address rejected: User unknown\n\
                 \x20 dave@example.net\n\
                 \x20   (generated from team@example.org)\n\
                 \x20   Mailbox quota exceeded\n\
                 \n\
                 ------ This is a copy of the message, including all the headers. ------\n\
                 Return-path: <shop@example.com>\n\
                 Received: from shop by mx.example.org with local (Exim 4.50)\n\
                 \tid 1ABCDE-0000AB-00\n\
                 \tfor team@example.org; Mon, 01 Jan 2020 00:00:00 +0000\n",
        failed: &["ann@example.net", "dave@example.net"],
        originals: &[("dave@example.net", "team@example.org")],
    },
    Layout {
        name: "Domino: was not delivered to / because",
        notice: "From: Postmaster@notes.example.org\n\
                 To: shop@example.com\n\
                 Subject: DELIVERY FAILURE: User ann (ann@example.net) not listed in Domino Directory\n\
                 \n\
                 Your message\n\
                 \n\
                 \x20 Subject: Hello\n\
                 \n\
                 was not delivered to:\n\
                 \n\
                 \x20 ann@example.net\n\
                 \n\
                 because:\n\
                 \n\
                 \x20 User ann (ann@example.net) not listed in Domino Directory\n",
        failed: &["ann@example.net"],
        originals: &[],
    },
    Layout {
        name: "Exchange 2000/2003: did not reach the following recipient(s)",
        notice: "From: System Administrator <postmaster@example.net>\n\
                 To: Shop <shop@example.com>\n\
                 Subject: Undeliverable: Hello\n\
                 \n\
                 Your message\n\
                 \n\
                 \x20 To:      Ann <ann@example.net>; Bob <bob@example.net>\n\
                 \x20 Subject: Hello\n\
                 \x20 Sent:    Mon, 1 Jan 2020 00:00:00 +0000\n\
                 \n\
                 did not reach the following recipient(s):\n\
                 \n\
                 ann@example.net on Mon, 1 Jan 2020 00:00:05 +0000\n\
                 \x20           The e-mail account does not exist at the organization this message was sent to.\n\
                 \x20           <mx.example.net #5.1.1>\n",
        failed: &["ann@example.net"],
        originals: &[],
    },
    Layout {
        name: "GroupWise: undeliverable to the following, reason in parentheses",
        notice: "From: Mail Delivery System <postmaster@gw.example.net>\n\
                 To: shop@example.com\n\
                 Subject: Undeliverable mail\n\
                 \n\
                 The message that you sent was undeliverable to the following:\n\
                 \tann@example.net (user not found)\n\
                 \tbob@example.net (user not found)\n\
                 \n\
                 Possibly truncated original message follows:\n\
                 \n\
                 From: shop@example.com\n\
                 To: ann@example.net, bob@example.net\n",
        failed: &["ann@example.net", "bob@example.net"],
        originals: &[],
    },
    Layout {
        name: "Courier: recipients cannot be delivered, a session transcript under each",
        notice: "From: Courier mail server at mx.example.org <@>\n\
                 To: shop@example.com\n\
                 Subject: NOTICE: mail delivery status.\n\
                 \n\
                 This is a delivery status notification from mx.example.org,\n\
                 running the Courier mail server, version 1.0.\n\
                 \n\
                 The original message was received on Mon, 1 Jan 2020 00:00:00 +0000\n\
                 from localhost (localhost [127.0.0.1])\n\
                 \n\
                 ---------------------------------------------------------------------------\n\
                 \n\
                 \x20                          UNDELIVERABLE MAIL\n\
                 \n\
                 Your message to the following recipients cannot be delivered:\n\
                 \n\
                 <ann@example.net>:\n\
                 \x20   mx.example.net [192.0.2.1]:\n\
                 >>> RCPT TO:<ann@example.net>\n\
                 <<< 550 5.1.1 <ann@example.net>... User unknown\n\
                 \n\
                 <bob@example.net>:\n\
                 \x20   mx.example.net [192.0.2.1]:\n\
                 >>> MAIL FROM:<shop@example.com>\n\
                 <<< 552 5.3.4 Message size exceeds fixed limit\n",
        failed: &["ann@example.net", "bob@example.net"],
        originals: &[],
    },
    Layout {
        name: "Microsoft 365: delivery has failed to these recipients, display name beside",
        notice: "From: Microsoft Outlook <postmaster@example.onmicrosoft.com>\n\
                 To: <shop@example.com>\n\
                 Subject: Undeliverable: Hello\n\
                 \n\
                 Delivery has failed to these recipients or groups:\n\
                 \n\
                 Ann (ann@example.net)\n\
                 The email address you entered couldn't be found. Please check the recipient's\n\
                 email address and try to resend the message. If the problem continues,\n\
                 please contact your helpdesk.\n\
                 \n\
                 Diagnostic information for administrators:\n\
                 \n\
                 Generating server: mx.example.net\n\
                 \n\
                 ann@example.net\n\
                 Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'\n",
        failed: &["ann@example.net"],
        originals: &[],
    },
    Layout {
        name: "CommuniGate: failed to deliver to '<address>', module reports",
        notice: "From: MAILER-DAEMON@cgp.example.org\n\
                 To: shop@example.com\n\
                 Subject: Undeliverable mail: Failed to deliver to '<ann@example.net>'\n\
                 \n\
                 Failed to deliver to '<ann@example.net>'\n\
                 SMTP module(domain example.net) reports:\n\
                 \x20mx.example.net: 550 5.1.1 <ann@example.net>... User unknown\n",
        failed: &["ann@example.net"],
        originals: &[],
    },
    Layout {
        name: "hMailServer/Kerio: could not be reached, the remote's reply below",
        notice: "From: mailer-daemon@mail.example.org\n\
                 To: shop@example.com\n\
                 Subject: Message undeliverable: Hello\n\
                 \n\
                 Your message did not reach some or all of the intended recipients.\n\
                 \n\
                 \x20  Sent: Mon, 1 Jan 2020 00:00:00 +0000\n\
                 \x20  Subject: Hello\n\
                 \n\
                 The following recipient(s) could not be reached:\n\
                 \n\
                 ann@example.net\n\
                 \x20  Error Type: SMTP\n\
                 \x20  Remote server (192.0.2.1) issued an error.\n\
                 \x20  hMailServer sent: RCPT TO:<ann@example.net>\n\
                 \x20  Remote server replied: 550 5.1.1 <ann@example.net>: User unknown\n",
        failed: &["ann@example.net"],
        originals: &[],
    },
    Layout {
        name: "a gateway's sentence: from the sender to the recipient, postmaster to contact",
        notice: "From: postmaster@gw.example.org\n\
                 To: shop@example.com\n\
                 Subject: Delivery failure\n\
                 \n\
                 Your message from shop@example.com to ann@example.net could not be\n\
                 delivered: the recipient's mailbox is full.\n\
                 Questions? Write to postmaster@gw.example.org.\n",
        failed: &["ann@example.net"],
        originals: &[],
    },
    Layout {
        name: "X.400-style gateway: Recipient / Original recipient / Reason fields",
        notice: "From: X400 Gateway <mailer-daemon@x400.example.org>\n\
                 To: shop@example.com\n\
                 Subject: Non-delivery notification\n\
                 \n\
                 Your message could not be delivered.\n\
                 \n\
                 Recipient:          <ann.forwarded@example.net>\n\
                 Original recipient: <ann@example.org>\n\
                 Reason:             Unable to transfer, recipient unknown\n",
        failed: &["ann.forwarded@example.net"],
        originals: &[("ann.forwarded@example.net", "ann@example.org")],
    },
    Layout {
        name: "Exchange 5.5: display names only, the returned original's one To names it",
        notice: "From: System Administrator <postmaster@example.net>\n\
                 To: shop@example.com\n\
                 Subject: Undeliverable: Hello\n\
                 MIME-Version: 1.0\n\
                 Content-Type: multipart/mixed; boundary=\"B\"\n\
                 \n\
                 --B\n\
                 Content-Type: text/plain\n\
                 \n\
                 Your message did not reach some or all of the intended recipients.\n\
                 \n\
                 The following recipient(s) could not be reached:\n\
                 \n\
                 \x20     'Ann Example' on 1/1/2004 12:00 PM\n\
                 \x20           The recipient name is not recognized\n\
                 --B\n\
                 Content-Type: message/rfc822\n\
                 \n\
                 From: Shop <shop@example.com>\n\
                 To: Ann Example <ann@example.net>\n\
                 Subject: Hello\n\
                 \n\
                 Hello\n\
                 --B--\n",
        failed: &["ann@example.net"],
        originals: &[],
    },
    Layout {
        name: "a notice greeting its addressee by address before naming the recipient",
        notice: "From: Mail Delivery System <postmaster@gw.example.org>\n\
                 To: shop@example.com\n\
                 Subject: Delivery failure\n\
                 \n\
                 Dear shop@example.com, the message you sent could not be delivered\n\
                 because ann@example.net does not exist here.\n",
        failed: &["ann@example.net"],
        originals: &[],
    },
    Layout {
        name: "Messaging Server: Original address / Recipient address / Reason lines",
        notice: "From: Internet Mail Delivery <postmaster@ms.example.net>\n\
                 To: shop@example.com\n\
                 Subject: Delivery Notification: Delivery has failed\n\
                 \n\
                 This report relates to a message you sent with the following header fields:\n\
                 \n\
                 \x20 Message-id: <4711@shop.example.com>\n\
                 \x20 From: shop@example.com\n\
                 \x20 To: ann@example.net\n\
                 \n\
                 Your message cannot be delivered to the following recipients:\n\
                 \n\
                 \x20 Original address: ann@example.net\n\
                 \x20 Recipient address: ann.smith@mailhost.example.net\n\
                 \x20 Reason: Remote SMTP server has rejected address\n\
                 \x20 Diagnostic code: smtp;550 5.1.1 unknown or illegal alias\n",
        failed: &["ann.smith@mailhost.example.net"],
        originals: &[("ann.smith@mailhost.example.net", "ann@example.net")],
    },
    Layout {
        name: "GroupWise: local parts only, the returned original's one To names it",
        notice: "From: Mail Delivery System <postmaster@gw.example.net>\n\
                 To: shop@example.com\n\
                 Subject: Undeliverable mail\n\
                 \n\
                 The message that you sent was undeliverable to the following:\n\
                 \tann (user not found)\n\
                 \n\
                 Possibly truncated original message follows:\n\
                 \n\
                 From: shop@example.com\n\
                 To: ann@example.net\n\
                 Subject: Hello\n",
        failed: &["ann@example.net"],
        originals: &[],
    },
];

#[test]
fn every_layout_yields_its_failed_recipients_and_nothing_else() {
    let mut wrong = Vec::new();
    for layout in LAYOUTS {
        let report = classify_message(layout.notice.as_bytes());
        let mut found: Vec<&str> = report
            .recipients
            .iter()
            .filter_map(|v| v.recipient.as_deref())
            .collect();
        found.sort_unstable();
        let mut expected = layout.failed.to_vec();
        expected.sort_unstable();
        if report.kind != Kind::Bounce || found != expected {
            wrong.push(format!(
                "{}: {} {:?}, expected {:?}",
                layout.name,
                report.kind.as_str(),
                found,
                expected
            ));
        }
        for (failed, original) in layout.originals {
            let given = report
                .recipients
                .iter()
                .find(|v| v.recipient.as_deref() == Some(failed))
                .and_then(|v| v.original_recipient.as_deref());
            if given != Some(original) {
                wrong.push(format!(
                    "{}: {failed} came from {original}, got {given:?}",
                    layout.name
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
