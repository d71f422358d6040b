//! Finding the machine-readable bits inside an SMTP answer quoted in free text: the reply
//! code (550), the enhanced status code (5.1.1) and the command it answered (RCPT TO).

use serde::Serialize;

/// The SMTP command a remote refused; where it refused says a lot (an "unknown user" after
/// DATA is a filter pretending, since the same address passed RCPT TO).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SmtpCommand {
    /// Connection greeting, HELO or EHLO.
    Connect,
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// DATA or the end of data.
    Data,
}

/// Phrases naming the command, each with the command it names. The earliest phrase in a
/// text wins: notices name the failing command once, next to the answer.
const COMMAND_PHRASES: &[(&str, SmtpCommand)] = &[
    // "RCPT TO: ann@..." alone is often a quoted envelope, not the failing command; these
    // say the command was answered.
    ("rcpt to command", SmtpCommand::Rcpt),
    ("after rcpt to", SmtpCommand::Rcpt),
    (">>> rcpt to", SmtpCommand::Rcpt),
    ("our rcpt to", SmtpCommand::Rcpt),
    ("rcpt to:<", SmtpCommand::Rcpt),
    ("smtp:rcpt", SmtpCommand::Rcpt),
    ("[rcpt_to]", SmtpCommand::Rcpt),
    ("rcpt command", SmtpCommand::Rcpt),
    ("did not like recipient", SmtpCommand::Rcpt),
    ("does not like recipient", SmtpCommand::Rcpt),
    ("end of data", SmtpCommand::Data),
    ("after data", SmtpCommand::Data),
    ("final data", SmtpCommand::Data),
    (">>> data", SmtpCommand::Data),
    ("data command", SmtpCommand::Data),
    ("after mail from", SmtpCommand::Mail),
    ("mail from command", SmtpCommand::Mail),
    ("our mail from", SmtpCommand::Mail),
    (">>> mail from", SmtpCommand::Mail),
    ("initial connection", SmtpCommand::Connect),
    ("after helo", SmtpCommand::Connect),
    ("after ehlo", SmtpCommand::Connect),
    ("helo command", SmtpCommand::Connect),
    ("ehlo command", SmtpCommand::Connect),
    ("smtp greeting", SmtpCommand::Connect),
];

/// The command a notice says the remote refused, if it says.
pub fn find_command(text: &str) -> Option<SmtpCommand> {
    let lower = text.to_ascii_lowercase();
    COMMAND_PHRASES
        .iter()
        .filter_map(|(phrase, command)| lower.find(phrase).map(|at| (at, *command)))
        .min_by_key(|(at, _)| *at)
        .map(|(_, command)| command)
}

/// The first enhanced status code (`class.subject.detail`, class 2, 4 or 5) in a text,
/// skipping dotted numbers that are part of something longer (IP addresses, versions).
pub fn find_enhanced_status(text: &str) -> Option<String> {
    enhanced_statuses(text).next().map(|(_, code)| code)
}

/// Every enhanced status code in a text, in order: a relay quoting the remote's answer
/// gives two ("5.1.0 - Unknown address error 550-'5.2.2 Mailbox full'").
pub fn all_enhanced_statuses(text: &str) -> impl Iterator<Item = String> + '_ {
    enhanced_statuses(text).map(|(_, code)| code)
}

/// Every enhanced status code in a text with its byte offset.
fn enhanced_statuses(text: &str) -> impl Iterator<Item = (usize, String)> + '_ {
    let bytes = text.as_bytes();
    (0..bytes.len()).filter_map(move |start| {
        let end = enhanced_status_at(bytes, start)?;
        Some((start, text[start..end].to_string()))
    })
}

/// The end of the enhanced status code starting exactly at `start`, if one does.
fn enhanced_status_at(bytes: &[u8], start: usize) -> Option<usize> {
    if !matches!(bytes.get(start), Some(b'2' | b'4' | b'5')) {
        return None;
    }
    if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'.') {
        return None;
    }
    let mut at = start + 1;
    for _ in 0..2 {
        if bytes.get(at) != Some(&b'.') {
            return None;
        }
        at += 1;
        let digits = bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 || digits > 3 {
            return None;
        }
        at += digits;
    }
    // "5.1.1." ends a sentence; "5.1.1.3" is something else.
    let next = bytes.get(at).copied();
    let after = bytes.get(at + 1).copied();
    if next.is_some_and(|b| b.is_ascii_alphanumeric())
        || (next == Some(b'.') && after.is_some_and(|b| b.is_ascii_digit()))
    {
        return None;
    }
    Some(at)
}

/// The SMTP reply code in a text: a bare three-digit 2xx/4xx/5xx number, preferring one
/// that is followed by an enhanced status code ("550 5.1.1", "550-5.7.26").
pub fn find_reply_code(text: &str) -> Option<u16> {
    let bytes = text.as_bytes();
    let mut first = None;
    for start in 0..bytes.len().saturating_sub(2) {
        if !matches!(bytes[start], b'2' | b'4' | b'5')
            || !bytes[start + 1].is_ascii_digit()
            || !bytes[start + 2].is_ascii_digit()
        {
            continue;
        }
        if start > 0
            && !matches!(
                bytes[start - 1],
                b' ' | b'\t'
                    | b'\n'
                    | b'\r'
                    | b'('
                    | b'['
                    | b'"'
                    | b'\''
                    | b'<'
                    | b':'
                    | b'='
                    | b'#'
                    | b';'
            )
        {
            continue;
        }
        // A reply code is followed by its text ("550 ", "550-"); a number ending a line is
        // a count or a size.
        let next = bytes.get(start + 3).copied();
        if !matches!(next, Some(b' ' | b'-' | b'\t')) {
            continue;
        }
        let Ok(code) = text[start..start + 3].parse::<u16>() else {
            continue;
        };
        let followed_by_status =
            matches!(next, Some(b' ' | b'-')) && enhanced_status_at(bytes, start + 4).is_some();
        if followed_by_status {
            return Some(code);
        }
        first.get_or_insert(code);
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_status_skips_ip_addresses_and_versions() {
        assert_eq!(
            find_enhanced_status("host [192.0.2.5]: 550 5.1.1 <a@b>"),
            Some("5.1.1".into())
        );
        assert_eq!(
            find_enhanced_status("version 4.8.5.36 said 4.2.2."),
            Some("4.2.2".into())
        );
        assert_eq!(find_enhanced_status("Exim 4.72 at 10.5.1.1"), None);
        assert_eq!(find_enhanced_status("#5.1.351"), Some("5.1.351".into()));
    }

    #[test]
    fn reply_code_prefers_the_one_before_a_status() {
        assert_eq!(
            find_reply_code("id 250 said: 550-5.7.26 Unauthenticated"),
            Some(550)
        );
        assert_eq!(
            find_reply_code("Remote host said: 554 delivery error"),
            Some(554)
        );
        assert_eq!(find_reply_code("year 2014 and 5501"), None);
    }

    #[test]
    fn command_is_the_first_one_named() {
        assert_eq!(
            find_command("550 user unknown (in reply to RCPT TO command)"),
            Some(SmtpCommand::Rcpt)
        );
        assert_eq!(
            find_command("SMTP error from remote mail server after end of data: 550"),
            Some(SmtpCommand::Data)
        );
        assert_eq!(find_command("nothing here"), None);
    }
}
