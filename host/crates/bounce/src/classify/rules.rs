//! The classification rules, as data: what words mean which reason, what each enhanced
//! status code and reply code means, and which reasons are hard. Everything the classifier
//! knows about wording lives here, so a reviewer can read it top to bottom.
//!
//! Patterns are lower-case phrases matched against the diagnostic after lower-casing it and
//! collapsing whitespace, so "User  Unknown\n" matches "user unknown". A `*` inside a
//! pattern stands for up to [`GAP`] characters ("mailbox * full" matches "mailbox is
//! full" and "mailbox of ann is full"). They are general phrases that many MTAs use, never
//! one sample's sentence.

use serde::Serialize;

use crate::{Class, Reason};

/// How many characters a `*` in a pattern may stand for.
pub const GAP: usize = 40;

/// Text patterns, in order: the first reason with a matching pattern wins. Causes that
/// name the sender or the message's form come first (a refused sender domain "does not
/// exist" too, but it is the sender's), then what is wrong with the recipient's mailbox or
/// domain, then blocks and spam, then the generic and the temporary.
pub const TEXT_RULES: &[(Reason, &[&str])] = &[
    // Sender authentication: the remote checked SPF, DKIM or DMARC and it failed.
    (
        Reason::AuthFailure,
        &[
            "dmarc",
            "unauthenticated email",
            "spf check",
            "spf fail",
            "spf validation",
            "sender policy framework",
            "dkim",
            "domainkeys",
        ],
    ),
    // The sending IP's reverse DNS is missing or does not match.
    (
        Reason::RequirePtr,
        &[
            "reverse dns",
            "reverse lookup",
            "reverse hostname",
            "reverse host name",
            "ptr record",
            "no ptr",
            "rdns",
            "cannot find your hostname",
            "cannot resolve your hostname",
            "not resolve your address",
            "cannot find your reverse",
        ],
    ),
    // The sender's reputation (volume, complaints), not one message, is the problem.
    (
        Reason::BadReputation,
        &[
            "reputation",
            "user complaints",
            "unexpected volume",
            "unusual rate of unsolicited",
            "untrusted ip",
        ],
    ),
    // Too fast for this recipient or domain.
    (
        Reason::Speeding,
        &[
            "receiving mail at a rate",
            "rate limit",
            "rate-limit",
            "ratelimit",
            "sending too fast",
            "too quickly",
            "exceeded the rate",
        ],
    ),
    (
        Reason::VirusDetected,
        &["virus", "malware", "infected", "trojan"],
    ),
    // The message's form breaks the standards (before spam: Gmail explains the rule
    // with "to reduce the amount of spam").
    (
        Reason::NotCompliantRfc,
        &[
            "rfc 5322",
            "rfc5322",
            "rfc 2822",
            "rfc2822",
            "not rfc compliant",
            "multiple addresses in from",
        ],
    ),
    // The sender address or domain was refused (before the unknown-mailbox phrases: "domain
    // of sender address does not exist" is about us).
    (
        Reason::Rejected,
        &[
            "sender rejected",
            "sender address rejected",
            "sender denied",
            "sender not allowed",
            "sender is not allowed",
            "sender verify failed",
            "unauthorized sender",
            "unauthorised sender",
            "sender verification failed",
            "invalid sender",
            "domain of sender address",
            "sender domain",
            "mail from rejected",
            "bad sender",
            "unknown sender",
            "purported responsible address",
            "permission to post",
        ],
    ),
    // The remote does not relay for us.
    (
        Reason::NoRelaying,
        &[
            "relay access denied",
            "relaying denied",
            "relaying not allowed",
            "relay not permitted",
            "not permitted to relay",
            "unable to relay",
            "relay denied",
            "we do not relay",
            "no relaying",
            "relay not allowed",
            "not a gateway",
            // Debian's Exim in its local-only configuration.
            "remote domains not supported",
        ],
    ),
    // The address moved.
    (
        Reason::HasMoved,
        &[
            "has moved",
            "address has changed",
            "mailbox has moved",
            "no longer valid, please use",
            // qmail's text for an address its owner closed (`bouncesaying`, vdelivermail).
            "no longer accepts mail",
            // qmail-ldap's text for an address replaced by another.
            "has been replaced by",
        ],
    ),
    // The mailbox is over quota.
    (
        Reason::MailboxFull,
        &[
            "mailbox full",
            "mailbox is full",
            "mailbox * full",
            "mail box full",
            "inbox is full",
            "inbox full",
            "quota exceeded",
            "exceeded * quota",
            "exceeds * quota",
            "over quota",
            "overquota",
            "quota full",
            "disk quota",
            "storage allocation",
            "mailbox size limit",
            "mailbox exceeds",
            "maildir over",
            "insufficient space in mailbox",
            "out of storage space",
            "enough space in mailbox",
            "has exceeded its storage",
            "переполнен",
            // The same in the languages of European MTAs' and gateways' own notices.
            "postfach voll",
            "postfach ist voll",
            "speicherplatz * überschritten",
            "boîte aux lettres pleine",
            "boite aux lettres pleine",
            "boîte aux lettres est pleine",
            "quota dépassé",
            "buzón lleno",
            "buzón está lleno",
            "casella piena",
            "casella di posta piena",
            "caixa postal cheia",
            "caixa de correio cheia",
            "mailbox vol",
            "postvak vol",
        ],
    ),
    // The message is too large for the receiving system.
    (
        Reason::MesgTooBig,
        &[
            "message too large",
            "message too big",
            "message is too large",
            "message is too big",
            "message size exceeds",
            "message exceeds * size",
            "exceeds * message size",
            "maximum message size",
            "message length exceeds",
            "larger than the maximum",
            "size limit",
        ],
    ),
    // The mailbox exists but is switched off.
    (
        Reason::Suspend,
        &[
            "suspended",
            "account disabled",
            "mailbox disabled",
            "is disabled",
            "has been disabled",
            "disabled or discontinued",
            "deactivated",
            "inactive",
            "not active",
            "account is locked",
            "account locked",
            "temporarily locked",
            "temporary locked",
            "account closed",
            "account expired",
            "account is blocked",
            "account has been blocked",
            "mailbox is frozen",
            "заблокирован",
        ],
    ),
    // The domain or host does not accept mail at all (null MX, no mail service).
    (
        Reason::NotAccept,
        &[
            "does not accept mail",
            "doesn't accept mail",
            "not accepting network messages",
            "not accepting mail",
            "accept no mail",
            "accepts no mail",
            "null mx",
            "no mx found",
            "no smtp service",
            "couldn't find a mail exchanger",
            "could not find a mail exchanger",
            "mail receiving disabled",
        ],
    ),
    // The domain does not exist or has no usable mail host.
    (
        Reason::HostUnknown,
        &[
            "host unknown",
            "find any host",
            "host by that name",
            "no such host",
            "unknown host",
            "host not found",
            "host or domain name not found",
            "domain not found",
            "no such domain",
            "domain does not exist",
            "domain doesn't exist",
            "domain may not exist",
            "domain name not found",
            "unknown domain",
            "domain unknown",
            "unrouteable address",
            "unroutable address",
            "name or service not known",
            "host name lookup failure",
            "hostname lookup failure",
            "dns lookup failure",
            "non-existent host",
            "nonexistent host",
            "non-existent domain",
            "nxdomain",
            "recipient domain must exist",
            "domain is not reachable",
            // Lotus Domino's router: no route to the recipient's domain at all.
            "no route found to domain",
        ],
    ),
    // The mailbox does not exist. Only with corroboration (a 5.1.1, or a refusal at RCPT
    // TO) is this the reason; see `UNCONFIRMED_UNKNOWN_USER`.
    (
        Reason::UserUnknown,
        &[
            "user unknown",
            "unknown user",
            "user not found",
            "unknown recipient",
            "recipient unknown",
            "recipient not found",
            "recipient does not exist",
            "recipient name is not recognized",
            "invalid final delivery userid",
            "not listed in domino directory",
            "not listed in public name",
            "account does not exist at the organization",
            "recipient address rejected: access denied",
            "no such user",
            "no such mailbox",
            "no such recipient",
            "no such account",
            "no such address",
            "no such person",
            "no mailbox",
            "mailbox not found",
            "mailbox does not exist",
            "mailbox doesn't exist",
            "mailbox unavailable",
            "mailbox <> unavailable",
            "recipnotfound",
            // Microsoft 365's RESOLVER.ADR.RecipientNotFound, often with 5.1.10, which RFC
            // 7505 gives to a null MX: the words say the directory has no such recipient.
            "recipientnotfound",
            "not found by smtp address lookup",
            "not our customer",
            "destinataire invalide",
            "n't exist",
            "mailbox is unavailable",
            "mailbox not available",
            "address not found",
            "address * couldn't be found",
            "wasn't found at",
            "was not found at",
            "address * could not be found",
            "address does not exist",
            "address doesn't exist",
            "addressee unknown",
            "unknown mailbox",
            "account does not exist",
            "account doesn't exist",
            "user does not exist",
            "user doesn't exist",
            "user doesn't have a",
            "doesn't have an account",
            "not a valid mailbox",
            "invalid mailbox",
            "invalid recipient",
            "invalid address",
            "invalid user",
            "not a known user",
            "bad destination mailbox",
            // CompuServe's and older gateways' wording.
            "invalid receiver",
            // X.400's diagnostic unrecognised-OR-name (RFC 2156 maps it to 5.1.1): the
            // directory has no such originator/recipient name.
            "unrecognised o/r name",
            "unrecognized o/r name",
            "unrecognised-or-name",
            "unrecognized-or-name",
            "unknown local part",
            "unknown or illegal alias",
            "user invalid",
            "is not a valid user",
            "no account by that name",
            "does not exist",
            "unknown address",
            "utilisateur inconnu",
            "destinataire inconnu",
            "adresse inconnue",
            "unbekannt",
            "no existe",
            "inesistente",
            "не существует",
            "нет такого",
            "не найден",
            "存在しない",
            "宛先不明",
        ],
    ),
    // Listed or blocked sending IPs and hosts.
    (
        Reason::Blocked,
        &[
            "blacklist",
            "black list",
            "blocklist",
            "block list",
            "denylist",
            "dnsbl",
            "blocked using",
            "rejected using",
            "spamhaus",
            "spamcop",
            "sorbs",
            "listed in",
            "listed on",
            "listed at",
            "ip blocked",
            "host blocked",
            "invalid ip",
            "your ip",
            "from this ip",
            "your host",
            "client host rejected",
            "access denied, banned",
            "banned sending",
            "not allowed to send from",
            // Yahoo's [TSS09]: every message from the sending IP is refused from now on.
            "permanently deferred",
            "please use the smtp server of your isp",
            "dynamic ip",
            "dial-up",
            "dialup",
            "residential",
        ],
    ),
    // The content was judged spam.
    (
        Reason::SpamDetected,
        &[
            "spam",
            "junk mail",
            "bulk mail",
            "bulk email",
            "unsolicited",
            "content rejected",
            "phishing",
        ],
    ),
    // A recipient-side filter.
    (
        Reason::Filtered,
        &[
            "filtered",
            "content filter",
            "refused by recipient",
            "rejected by recipient",
            "recipient's preferences",
            "recipient preferences",
            "accepting mail from specific",
            "user refuses",
            "refuses to accept",
            // Mimecast: the sender is on the recipient's own block list.
            "envelope blocked - user",
        ],
    ),
    // Security requirements not met (before policy: "unauthenticated senders not allowed").
    (
        Reason::SecurityError,
        &[
            "authentication required",
            "authentication failed",
            "unauthenticated",
            "must issue a starttls",
            "starttls",
            "tls required",
            "encryption required",
            "certificate",
            "insecure",
        ],
    ),
    // Local policy of the receiving side.
    (
        Reason::PolicyViolation,
        &["policy", "prohibited", "not permitted", "not allowed"],
    ),
    // Too many connections at once.
    (
        Reason::TooManyConn,
        &[
            "too many connections",
            "too many concurrent",
            "too many simultaneous",
            "connection limit",
            "connections limit",
            "frequency limited",
            "too many sessions",
            "too many messages",
        ],
    ),
    // The receiving system is out of resources.
    (
        Reason::SystemFull,
        &[
            "insufficient system storage",
            "insufficient disk space",
            "disk full",
            "system full",
            "out of disk",
            "no space left",
        ],
    ),
    // The message waited too long (before network trouble: "expired after a timeout" is
    // an expiry; the timeout was only the last attempt's story).
    (
        Reason::Expired,
        &[
            "retry time",
            "retry timeout",
            "expired",
            "too long in queue",
            "could not be delivered within",
            "delivery time",
            "has been delayed",
            "delivery is delayed",
            "will retry",
            "will keep trying",
            "no successful delivery",
            "queue lifetime",
            "delivery failed * attempts",
        ],
    ),
    // Network trouble on the way.
    (
        Reason::NetworkError,
        &[
            "connection refused",
            "connection timed out",
            "timed out",
            "timeout",
            "no route to host",
            "network is unreachable",
            "network unreachable",
            "connection reset",
            "lost connection",
            "could not connect",
            "requests to connect",
            "couldn't connect",
            "unable to connect",
            "establish an smtp connection",
            "temporary lookup failure",
            "name service error",
            "name server",
            "routing loop",
            "mail loop",
            "too many hops",
            "loop detected",
        ],
    ),
    // A local delivery program failed.
    (
        Reason::MailerError,
        &[
            "mailer error",
            "command failed",
            "pipe to",
            "unknown mailer",
            "procmail",
            "exit code",
            "x-unix",
        ],
    ),
    // Malformed content.
    (
        Reason::ContentError,
        &[
            "header size exceeds",
            "mime",
            "8-bit data",
            "8bit data",
            "line too long",
            "header error",
            "invalid header",
            "malformed message",
            "content error",
        ],
    ),
    (
        Reason::SyntaxError,
        &[
            "syntax error",
            "command unrecognized",
            "unrecognized command",
            "bad sequence of commands",
            "malformed",
            "invalid command",
        ],
    ),
    (
        Reason::SystemError,
        &[
            "system error",
            "internal error",
            "server error",
            "local error",
            "temporary failure",
            "temporarily unavailable",
            "service unavailable",
            "service * unavailable",
            "service refused",
            "resources temporarily",
            "i/o error",
            "configuration error",
        ],
    ),
    // "Blocked" with nothing more specific around it (Proofpoint's "554 Blocked - see
    // <link>"): the receiver blocked us. Last, since spam, filters and policies that say
    // why they blocked a message say so in words matched above.
    (Reason::Blocked, &["blocked"]),
];

/// Phrases in which the bouncing server speaks for its own mailbox directory (Exchange
/// 2000/2003, IMail, Lotus Domino, and Microsoft 365's directory-based edge blocking, whose
/// "5.4.1 Recipient address rejected: Access denied" means the directory has no such
/// recipient): as authoritative as a 5.1.1, so an "unknown user" in these words needs no
/// other corroboration.
pub const DIRECTORY_VERDICTS: &[&str] = &[
    "recipient address rejected: access denied",
    "recipnotfound",
    "recipientnotfound",
    "not found by smtp address lookup",
    // Exchange's and Microsoft 365's own words for RecipNotFound in a free-text NDR
    // ("ann wasn't found at example.net").
    "address you entered couldn't be found",
    "wasn't found at",
    "recipient name is not recognized",
    "account does not exist at the organization",
    "invalid final delivery userid",
    "not listed in domino directory",
    "not listed in public name",
    "unrecognised o/r name",
    "unrecognized o/r name",
    "unrecognised-or-name",
    "unrecognized-or-name",
];

/// Phrases that say the mailbox or recipient itself is not there, as a lookup answers it:
/// receivers that look their recipients up only at the end of DATA (mail.ru's "invalid
/// mailbox", Yahoo's "mailbox not found"), and OpenSMTPD's "Invalid recipient" at RCPT TO,
/// which the sending MTA's notice quotes without naming the command. A lookup's result, not a
/// filter's cover story, so they confirm an "unknown user" at any stage. A filter that disguises its refusal says "user unknown" or
/// "no such user"; RFC 5321's generic 550 text "mailbox unavailable" is left out, since any
/// refusal can carry it.
pub const MAILBOX_LOOKUP_VERDICTS: &[&str] = &[
    "invalid mailbox",
    "invalid recipient",
    "invalid receiver",
    "mailbox not found",
    "no such mailbox",
    "mailbox does not exist",
    "mailbox doesn't exist",
    // The recipient or address itself said not to exist is a lookup's statement too.
    // Gmail's "The email account that you tried to reach does not exist" is left out: the
    // reference labels it `filtered` when nothing else confirms it (rfc3464-42, status 5.0.0).
    "recipient does not exist",
    "address does not exist",
    "mailbox * does not exist",
    // qmail-local's own answer when its user lookup fails.
    "no mailbox here by that name",
];

/// RFC 5321's own text for a 550 reply, which large receivers (Outlook.com, GMX, WEB.DE)
/// send at RCPT TO for an address they do not have. When the notice does not say which
/// command it answered, it is read as the lookup's answer it usually is; after DATA, where a
/// filter may send the same generic text, it stays unconfirmed.
pub const STANDARD_MAILBOX_UNAVAILABLE: &[&str] =
    &["mailbox unavailable", "mailbox <> unavailable"];

/// Phrases in which the notice's own MTA says it was refused at RCPT TO: qmail's "does not
/// like recipient", Exim's "unrouteable address". They corroborate an "unknown user" as
/// much as the command named outright. Postfix's "Recipient address rejected" is left out:
/// quoted by a gateway that had accepted the message, it tells of a refusal further on,
/// after the gateway's own RCPT TO had passed.
pub const RCPT_STAGE_PHRASES: &[&str] = &[
    "unrouteable address",
    "unroutable address",
    "does not like recipient",
    "did not like recipient",
];

/// Reasons that say an address exists but refused this message, or refused us: when the
/// notice's words name one of them, an address-level status code (x.1.1, often a receiver's
/// catch-all refusal code) does not make the address unknown.
pub const CONTRADICTS_UNKNOWN_USER: &[Reason] = &[
    Reason::MailboxFull,
    Reason::Suspend,
    Reason::HasMoved,
    Reason::Rejected,
    Reason::Blocked,
    Reason::NoRelaying,
    Reason::PolicyViolation,
    Reason::SpamDetected,
];

/// What an "unknown user" answer becomes when nothing corroborates it: neither a status
/// code saying so (x.1.x), nor a refusal at RCPT TO, nor a directory's own verdict. A mailbox
/// that passed RCPT TO and is then "unknown" after DATA is a filter speaking; so is a bare
/// "user unknown" in a gateway's own words. Soft, so one odd answer does not put a real
/// address on the filter list.
pub const UNCONFIRMED_UNKNOWN_USER: Reason = Reason::Filtered;

/// Exact enhanced status codes whose meaning the generic subject/detail table gets wrong
/// (provider-specific details, RFC 7372 / RFC 7505 codes).
pub const EXACT_STATUS: &[(&str, Reason)] = &[
    ("5.1.10", Reason::NotAccept), // RFC 7505: recipient's domain has a null MX
    ("5.7.27", Reason::NotAccept), // RFC 7505: sender's domain has a null MX
    ("5.7.13", Reason::Suspend),   // user account disabled
    ("5.7.20", Reason::AuthFailure), // no passing DKIM signature
    ("5.7.21", Reason::AuthFailure),
    ("5.7.22", Reason::AuthFailure),
    ("5.7.23", Reason::AuthFailure), // SPF validation failed
    ("5.7.24", Reason::AuthFailure),
    ("5.7.25", Reason::RequirePtr),   // reverse DNS validation failed
    ("5.7.26", Reason::AuthFailure),  // multiple authentication checks failed (DMARC)
    ("5.7.509", Reason::AuthFailure), // Microsoft: DMARC reject
    ("4.4.316", Reason::Expired),     // Microsoft: message expired, connection refused
    ("5.4.316", Reason::Expired),
    ("4.7.0", Reason::Blocked),
    // RFC 3463 reads x.4.1 as "no answer from host"; a permanent 5.4.1 is Microsoft's
    // "recipient address rejected: access denied" (the words decide when they say more).
    ("5.4.1", Reason::Rejected),
];

/// Enhanced status codes by `subject.detail` (RFC 3463), class digit aside.
pub const STATUS_RULES: &[(&str, Reason)] = &[
    ("1.0", Reason::UserUnknown),
    ("1.1", Reason::UserUnknown), // bad destination mailbox address
    ("1.2", Reason::HostUnknown), // bad destination system address
    ("1.3", Reason::UserUnknown), // bad destination mailbox address syntax
    ("1.4", Reason::UserUnknown), // destination mailbox address ambiguous
    ("1.6", Reason::HasMoved),    // destination mailbox has moved
    ("1.7", Reason::Rejected),    // bad sender's mailbox address syntax
    ("1.8", Reason::Rejected),    // bad sender's system address
    ("2.0", Reason::Filtered),    // other or undefined mailbox status
    ("2.1", Reason::Filtered),    // mailbox disabled, not accepting messages
    ("2.2", Reason::MailboxFull), // mailbox full
    ("2.3", Reason::ExceedLimit), // message length exceeds administrative limit
    ("2.4", Reason::SystemError), // mailing list expansion problem
    ("3.0", Reason::SystemError),
    ("3.1", Reason::SystemFull),  // mail system full
    ("3.2", Reason::NotAccept),   // system not accepting network messages
    ("3.3", Reason::SystemError), // system not capable of selected features
    ("3.4", Reason::MesgTooBig),  // message too big for system
    ("3.5", Reason::SystemError), // system incorrectly configured
    ("4.0", Reason::NetworkError),
    ("4.1", Reason::Expired),      // no answer from host
    ("4.2", Reason::NetworkError), // bad connection
    ("4.3", Reason::SystemError),  // directory server failure
    ("4.4", Reason::HostUnknown),  // unable to route
    ("4.5", Reason::SystemFull),   // mail system congestion
    ("4.6", Reason::NetworkError), // routing loop detected
    ("4.7", Reason::Expired),      // delivery time expired
    ("5.0", Reason::SyntaxError),
    ("5.1", Reason::SyntaxError), // invalid command
    ("5.2", Reason::SyntaxError), // syntax error
    ("5.3", Reason::TooManyConn), // too many recipients
    ("5.4", Reason::SyntaxError), // invalid command arguments
    ("5.5", Reason::SyntaxError), // wrong protocol version
    ("6.0", Reason::ContentError),
    ("6.1", Reason::ContentError), // media not supported
    ("6.2", Reason::ContentError), // conversion required and prohibited
    ("6.3", Reason::ContentError),
    ("6.4", Reason::ContentError),
    ("6.5", Reason::ContentError),
    ("6.6", Reason::ContentError),
    ("6.7", Reason::ContentError),
    ("6.8", Reason::ContentError),
    ("6.9", Reason::ContentError),
    ("6.10", Reason::ContentError),
    ("7.0", Reason::SecurityError),
    ("7.1", Reason::Rejected), // delivery not authorized, message refused
    ("7.2", Reason::Rejected), // mailing list expansion prohibited
    ("7.3", Reason::SecurityError), // security conversion required but not possible
    ("7.4", Reason::SecurityError), // security features not supported
    ("7.5", Reason::SecurityError), // cryptographic failure
    ("7.6", Reason::SecurityError), // cryptographic algorithm not supported
    ("7.7", Reason::SecurityError), // message integrity failure
    ("7.8", Reason::SecurityError), // authentication credentials invalid
    ("7.9", Reason::PolicyViolation), // authentication mechanism is too weak
    ("7.10", Reason::SecurityError), // encryption needed
    ("7.11", Reason::SecurityError), // encryption required for requested mechanism
    ("7.15", Reason::SecurityError),
    ("7.17", Reason::HasMoved), // mailbox owner has changed
    ("7.18", Reason::HasMoved), // domain owner has changed
];

/// Enhanced status codes by subject alone, for details neither RFC 3463 nor the tables
/// above know (providers mint their own: 5.7.129, 4.4.316, 5.2.121): the subject still says
/// what kind of trouble it is. Subject 1 (addressing) is left out on purpose: its
/// provider details are as often about the sender (5.1.90, a sending limit) as about the
/// recipient, and an unknown-user verdict needs more than a guess.
pub const STATUS_SUBJECT_RULES: &[(&str, Reason)] = &[
    ("2", Reason::Filtered),        // mailbox status
    ("3", Reason::SystemError),     // mail system status
    ("4", Reason::NetworkError),    // network and routing status
    ("5", Reason::SyntaxError),     // mail delivery protocol status
    ("6", Reason::ContentError),    // message content or media status
    ("7", Reason::PolicyViolation), // security or policy status
];

/// SMTP reply codes, for answers that carry no enhanced status and no telling words.
pub const REPLY_CODE_RULES: &[(u16, Reason)] = &[
    (421, Reason::TooManyConn), // service not available, closing channel
    (450, Reason::Undefined),
    (451, Reason::SystemError), // local error in processing
    (452, Reason::SystemFull),  // insufficient system storage
    (500, Reason::SyntaxError),
    (501, Reason::SyntaxError),
    (502, Reason::SyntaxError),
    (503, Reason::SyntaxError),
    (504, Reason::SyntaxError),
    (521, Reason::NotAccept),     // RFC 7504: host does not accept mail
    (530, Reason::SecurityError), // authentication required
    (535, Reason::SecurityError),
    (551, Reason::HasMoved),    // user not local; please try <forward-path>
    (552, Reason::MailboxFull), // exceeded storage allocation
    (553, Reason::Rejected),    // mailbox name not allowed
    (554, Reason::Rejected),    // transaction failed
    (556, Reason::NotAccept),   // RFC 7504: domain does not accept mail
];

/// The status table's reasons that say more than words do: when the status names one of
/// these and the text names one of the paired reasons, the status's finer reading wins
/// (5.2.3 and "message too large" is the recipient's own limit, not the system's).
pub const STATUS_REFINES_TEXT: &[(Reason, Reason)] = &[
    (Reason::ExceedLimit, Reason::MesgTooBig),
    (Reason::ExceedLimit, Reason::MailboxFull),
    // "Connection timed out" with 4.4.1 / 4.4.7: the MTA gave up retrying.
    (Reason::Expired, Reason::NetworkError),
];

/// How a reason reads when the answer was temporary (4xx, or a delay): a domain that
/// "does not exist" for now is a DNS failure on the way (SERVFAIL, a timeout), not a missing
/// domain, which DNS answers permanently (NXDOMAIN).
pub const TEMPORARY_READING: &[(Reason, Reason)] = &[(Reason::HostUnknown, Reason::NetworkError)];

/// How final a recipient's failure is: the second axis of the hard/soft table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Finality {
    /// A permanent answer: a 5xx reply or 5.x.x status (or no code at all in a failure notice).
    Permanent,
    /// A temporary answer (4xx, 4.x.x) that the sending MTA stopped retrying: the notice's
    /// action is `failed`, the message left the queue.
    GaveUp,
    /// Still being retried: a DSN with `Action: delayed`, or a live 4xx reply to us.
    Delayed,
}

/// Reasons that say the address itself is bad, whatever the code: later mail will fail the
/// same way.
pub const ADDRESS_REASONS: &[Reason] =
    &[Reason::UserUnknown, Reason::HostUnknown, Reason::HasMoved];

/// The hard/soft table: a bounce is hard when both its reason and its finality say the
/// address will fail again. docs/bounce-classification.md has the same table with the
/// cases where code and words disagree.
///
/// | reason | permanent (5xx, 5.x.x) | temporary, given up (4.x.x, failed) | delayed |
/// |---|---|---|---|
/// | userunknown, hasmoved | hard | hard | soft |
/// | hostunknown | hard | – (read as networkerror) | soft |
/// | notaccept | hard | soft | soft |
/// | every other reason | soft | soft | soft |
///
/// Why these rows:
/// - The reason comes from the words and the code weighed together (see
///   [`crate::classify`]): a 5.1.1 whose words say "mailbox full" is `mailboxfull`, so soft;
///   a 5.7.1 whose words say "no such user" at RCPT TO is `userunknown`, so hard.
/// - A 4.x.x "unknown user" in a notice whose action is `failed` is hard: the sending MTA
///   asked again for days and the mailbox was unknown every time, which is what a
///   permanent refusal predicts. While the message is only delayed it stays soft: the next
///   attempt may succeed (a directory being rebuilt, a mailbox created late).
/// - `hostunknown` under a temporary code is read as `networkerror` first
///   ([`TEMPORARY_READING`]), so it never reaches the table as hard.
/// - `notaccept` (null MX, RFC 7505; "does not accept mail") is hard only when permanent:
///   a 4xx "not accepting mail" is a host refusing for now.
/// - Every other reason is about this message, this sender or the receiving system (full,
///   filtered, blocked, spam, policy, expired...), so the address stays deliverable.
pub fn class_of(reason: Reason, finality: Finality) -> Class {
    let hard = match finality {
        Finality::Delayed => false,
        Finality::GaveUp => ADDRESS_REASONS.contains(&reason),
        Finality::Permanent => ADDRESS_REASONS.contains(&reason) || reason == Reason::NotAccept,
    };
    if hard { Class::Hard } else { Class::Soft }
}

/// One phrase of [`TEXT_RULES`] found in a normalized text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhraseMatch {
    /// The reason the phrase names.
    pub reason: Reason,
    /// The rule's phrase as written in [`TEXT_RULES`].
    pub phrase: &'static str,
    /// Where the phrase matched, as a byte range of the normalized text.
    pub span: (usize, usize),
}

/// Every reason whose phrases occur in the text (already normalized), in the order of
/// [`TEXT_RULES`], each with its first matching phrase.
pub fn phrase_matches(normalized: &str) -> Vec<PhraseMatch> {
    TEXT_RULES
        .iter()
        .filter_map(|(reason, patterns)| {
            patterns.iter().find_map(|phrase| {
                find_pattern(phrase, normalized).map(|span| PhraseMatch {
                    reason: *reason,
                    phrase,
                    span,
                })
            })
        })
        .collect()
}

/// The first reason whose patterns match the text (already lower-cased and collapsed).
pub fn reason_for_text(normalized: &str) -> Option<Reason> {
    TEXT_RULES
        .iter()
        .find(|(_, patterns)| patterns.iter().any(|p| pattern_matches(p, normalized)))
        .map(|(reason, _)| *reason)
}

/// The reason an enhanced status code names, if it names one.
pub fn reason_for_status(status: &str) -> Option<Reason> {
    if let Some((_, reason)) = EXACT_STATUS.iter().find(|(code, _)| *code == status) {
        return Some(*reason);
    }
    let (_, subject_detail) = status.split_once('.')?;
    STATUS_RULES
        .iter()
        .find(|(code, _)| *code == subject_detail)
        .map(|(_, reason)| *reason)
}

/// The reason the subject of a status code names when its detail is unknown (see
/// [`STATUS_SUBJECT_RULES`]); weaker evidence than the notice's own words.
pub fn reason_for_status_subject(status: &str) -> Option<Reason> {
    let mut parts = status.split('.');
    let (_, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    // x.y.0 is "other or undefined": it names no reason of its own.
    if detail == "0" {
        return None;
    }
    STATUS_SUBJECT_RULES
        .iter()
        .find(|(code, _)| *code == subject)
        .map(|(_, reason)| *reason)
}

/// Whether an enhanced status code is about the destination mailbox address (x.1.y but not
/// moved or sender codes): 5.1.1, 5.1.0, Microsoft's 5.1.10 "RecipientNotFound" and
/// 5.1.351 all say the address was looked up and refused.
pub fn status_names_destination(status: &str) -> bool {
    let mut parts = status.split('.');
    let (_, subject, detail) = (parts.next(), parts.next(), parts.next());
    subject == Some("1") && !matches!(detail, Some("6" | "7" | "8"))
}

/// The reason a bare reply code names, if it names one.
pub fn reason_for_reply_code(code: u16) -> Option<Reason> {
    REPLY_CODE_RULES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, reason)| *reason)
        .filter(|reason| *reason != Reason::Undefined)
}

/// Lower-cases, collapses whitespace and masks addresses: the form patterns are matched
/// against.
pub fn normalize(text: &str) -> String {
    collapse_and_mask(text).to_lowercase()
}

/// Collapses whitespace and turns mail addresses into `<>`, links into `<url>`, host names
/// into `<host>` and file paths into `<path>`, keeping the case: they are names, not words
/// ("filtered@example.jp", Mimecast's `https://community.mimecast.com/docs/...` is no
/// "mime" trouble, "spamrelay.example.net", Postfix's "cannot update mailbox
/// /var/mail/fulluser") and must not read as a cause.
pub fn collapse_and_mask(text: &str) -> String {
    let collapsed = text
        .split_whitespace()
        .map(|word| {
            if is_link(word) {
                "<url>"
            } else if is_host_name(word) {
                "<host>"
            } else if is_file_path(word) {
                "<path>"
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut masked = String::with_capacity(collapsed.len());
    let mut at = 0;
    for (start, address) in crate::parse::addresses_in(&collapsed) {
        if start < at {
            continue;
        }
        masked.push_str(&collapsed[at..start]);
        masked.push_str("<>");
        at = start + address.len();
    }
    masked.push_str(&collapsed[at..]);
    masked
}

/// Whether a word is a link ("https://support.google.com/mail/?p=NoSuchUser",
/// "<http://...>", "www.example.net/help"): receivers point to their help pages, whose paths
/// name anything ("UnsolicitedMessageError", "mimecast") without saying what happened.
fn is_link(word: &str) -> bool {
    let word = word
        .trim_start_matches(['(', '[', '<', '"', '\''])
        .to_ascii_lowercase();
    word.contains("://") || word.starts_with("www.") || word.starts_with("mailto:")
}

/// Whether a word is an absolute file path ("/var/mail/ann", "/home/ann/Maildir/"): a slash,
/// a letter, and at least one more slash. "i/o" and "5.1.1/550" are not.
fn is_file_path(word: &str) -> bool {
    let word = word.trim_start_matches(['(', '[', '<', '"', '\'']);
    word.strip_prefix('/').is_some_and(|rest| {
        rest.starts_with(|c: char| c.is_ascii_alphabetic()) && rest.contains('/')
    })
}

/// Whether a word is a host name ("mx.spam-filter.example.net", "host.example[192.0.2.1]"):
/// labels of letters, digits and hyphens joined by inner dots, with a letter somewhere
/// (not a status code or an IP address), and no `@` (addresses are masked on their own).
fn is_host_name(word: &str) -> bool {
    let name = word
        .trim_start_matches(['(', '[', '<', '"', '\''])
        .split(['[', ']', '(', ')', '>', ',', ';', '"', '\''])
        .next()
        .unwrap_or_default()
        .trim_end_matches(['.', ':']);
    let labels: Vec<&str> = name.split('.').collect();
    labels.len() >= 2
        && !name.contains('@')
        && labels.iter().all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels.last().is_some_and(|tld| {
            // One case throughout: "RESOLVER.ADR.RecipNotFound" is an Exchange code, not a name.
            tld.len() >= 2
                && (tld.bytes().all(|b| b.is_ascii_lowercase())
                    || tld.bytes().all(|b| b.is_ascii_uppercase()))
        })
}

/// Whether a pattern (phrases joined by `*` gaps) occurs in the text.
pub fn pattern_matches(pattern: &str, text: &str) -> bool {
    find_pattern(pattern, text).is_some()
}

/// Where a pattern (phrases joined by `*` gaps) first occurs in the text, as a byte range.
pub fn find_pattern(pattern: &str, text: &str) -> Option<(usize, usize)> {
    let mut pieces = pattern.split('*').map(str::trim).filter(|p| !p.is_empty());
    let first = pieces.next()?;
    let rest: Vec<&str> = pieces.collect();
    // Try every occurrence of the first piece: a later one may be the one whose
    // neighbours fit within the gaps.
    let mut from = 0;
    while let Some(found) = text[from..].find(first) {
        let start = from + found;
        let mut at = start + first.len();
        let fits = rest.iter().all(|piece| {
            let window_end =
                floor_char_boundary(text, (at + GAP + 2 + piece.len()).min(text.len()));
            match find_word(&text[at..window_end], piece) {
                Some(offset) => {
                    at += offset + piece.len();
                    true
                }
                None => false,
            }
        });
        if fits {
            return Some((start, at));
        }
        from = start + first.len();
    }
    None
}

/// Where a piece after a `*` gap occurs in a window as whole words: the gap already lets
/// other words in between, so the piece must not be part of a name ("mailbox * full" must
/// not find "full" in "for user fulluser").
fn find_word(window: &str, piece: &str) -> Option<usize> {
    let is_word = |c: char| c.is_alphanumeric();
    window.match_indices(piece).map(|(at, _)| at).find(|&at| {
        let before = window[..at].chars().next_back();
        let after = window[at + piece.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while index > 0 && !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}
