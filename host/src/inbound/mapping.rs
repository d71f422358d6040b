//! Which of our messages a returned message is about.
//!
//! A return-path address whose MAC verifies is proof that we sent the message it names: it
//! is looked for in the envelope recipients (a DSN comes back to it), then in the returned
//! `Return-Path` header (a feedback report quotes it), then in the other returned headers
//! and the text of a notice that quotes them. A text naming more than one of our messages
//! is ambiguous and names none. Failing that, the returned Message-ID is looked up; such a
//! match is not proof (Message-IDs are not secret), so it only counts where the report names
//! the copy's own recipient, and it never changes a status or the filter list.

use crate::bounce::Report;
use crate::delivery::verp::ReturnPath;
use crate::store::{MessageRecord, ReturnedMail, Store, StoreError, filter_key};

/// Return-path-shaped addresses looked at in one text, so a hostile report cannot make us
/// verify MACs without end.
const MAX_CANDIDATES: usize = 64;

/// How a message was tied to the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// Through a return-path address whose MAC verified.
    ReturnPath,
    /// Through the returned Message-ID and the recipient the report names: not proof.
    MessageId,
}

/// Our messages the returned mail is about, with how each was found.
pub fn messages_for(
    store: &Store,
    return_path: &ReturnPath,
    mail: &ReturnedMail,
    report: &Report,
    content: &[u8],
) -> Result<Vec<(MessageRecord, Match)>, StoreError> {
    let mut ids: Vec<String> = Vec::new();
    for recipient in &mail.recipients {
        if let Some(id) = return_path.message_id(recipient)
            && !ids.contains(&id)
        {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        let returned = report.returned.as_ref();
        let return_path_header = returned
            .and_then(|returned| returned.header("Return-Path"))
            .unwrap_or_default();
        let other_headers = returned
            .map(|returned| {
                returned
                    .headers
                    .iter()
                    .map(|(_, value)| value.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        let texts: [&[u8]; 3] = [
            return_path_header.as_bytes(),
            other_headers.as_bytes(),
            content,
        ];
        for text in texts {
            let mut found: Vec<String> = Vec::new();
            for candidate in return_path_candidates(text).take(MAX_CANDIDATES) {
                if let Some(id) = return_path.message_id(&candidate)
                    && !found.contains(&id)
                {
                    found.push(id);
                }
            }
            match found.len() {
                0 => continue,
                1 => ids = found,
                _ => {}
            }
            break;
        }
    }
    let mut messages = Vec::new();
    for id in &ids {
        if let Some(message) = store.message(id)? {
            messages.push((message, Match::ReturnPath));
        }
    }
    if messages.is_empty() {
        messages = by_message_id(store, report)?
            .into_iter()
            .map(|message| (message, Match::MessageId))
            .collect();
    }
    Ok(messages)
}

/// The copies sent under the returned Message-ID whose recipient the report names.
fn by_message_id(store: &Store, report: &Report) -> Result<Vec<MessageRecord>, StoreError> {
    let Some(header_id) = report
        .returned
        .as_ref()
        .and_then(|returned| returned.message_id())
    else {
        return Ok(Vec::new());
    };
    let named: Vec<String> = report
        .recipients
        .iter()
        .filter_map(|verdict| verdict.recipient.as_deref().map(filter_key))
        .collect();
    let mut copies = Vec::new();
    for id in store.messages_by_header_id(&header_id)? {
        if let Some(message) = store.message(&id)?
            && named.contains(&filter_key(&message.recipient))
        {
            copies.push(message);
        }
    }
    Ok(copies)
}

/// Everything in `text` shaped like one of our return-path addresses (`b+<hex>.<hex>@domain`),
/// for the MAC to judge.
fn return_path_candidates(text: &[u8]) -> impl Iterator<Item = String> + '_ {
    let is_local = |b: u8| b.is_ascii_hexdigit() || b == b'.';
    let is_domain = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-';
    text.windows(2)
        .enumerate()
        .filter(|(_, pair)| pair[0].eq_ignore_ascii_case(&b'b') && pair[1] == b'+')
        .filter_map(move |(start, _)| {
            let local_end = start
                + 2
                + text[start + 2..]
                    .iter()
                    .take_while(|&&b| is_local(b))
                    .count();
            if text.get(local_end) != Some(&b'@') {
                return None;
            }
            let domain_end = local_end
                + 1
                + text[local_end + 1..]
                    .iter()
                    .take_while(|&&b| is_domain(b))
                    .count();
            std::str::from_utf8(&text[start..domain_end])
                .ok()
                .map(str::to_string)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_path_addresses_are_found_in_any_text() {
        let text =
            b"Return-Path: <b+0123abcd.ffee@bounce.example>\r\nX: B+AA.BB@Other.Example, b+zz@x";
        let found: Vec<String> = return_path_candidates(text).collect();
        assert_eq!(
            found,
            ["b+0123abcd.ffee@bounce.example", "B+AA.BB@Other.Example"]
        );
        assert_eq!(return_path_candidates(b"b+").count(), 0);
        assert_eq!(return_path_candidates(b"").count(), 0);
    }
}
