//! RFC 3464 delivery status: a per-message field group, then one group per recipient
//! (Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code, ...). Read leniently:
//! folded fields, missing blank lines between groups, fields in a text/plain part, address
//! types missing or odd.

use super::freetext::{Block, cut};
use super::{Finding, collapse_whitespace, find_command, find_enhanced_status, find_reply_code};

/// A diagnostic is cut to this many bytes.
const MAX_DIAGNOSTIC: usize = 1000;
/// At most this many recipient groups are read.
const MAX_GROUPS: usize = 500;

/// The fields of one recipient group that matter here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecipientFields {
    /// Final-Recipient (or Original-Recipient, X-Actual-Recipient), lower-cased.
    pub recipient: Option<String>,
    /// Original-Recipient, lower-cased: the address as the sender gave it.
    pub original: Option<String>,
    /// X-Actual-Recipient, lower-cased: Sendmail's name for the address that failed after
    /// an alias or forward, beside the written one in Final-Recipient.
    pub actual: Option<String>,
    /// Action, lower-cased.
    pub action: Option<String>,
    /// Status.
    pub status: Option<String>,
    /// Diagnostic-Code without its type prefix.
    pub diagnostic: Option<String>,
    /// Remote-MTA without its type prefix.
    pub remote_mta: Option<String>,
}

/// A delivery-status report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryStatus {
    /// The per-message Original-Envelope-Id.
    pub envelope_id: Option<String>,
    /// One entry per recipient group.
    pub recipients: Vec<RecipientFields>,
}

impl DeliveryStatus {
    /// Two reports in one message (rare, but seen) read as one.
    pub fn merge(mut self, other: DeliveryStatus) -> DeliveryStatus {
        self.envelope_id = self.envelope_id.or(other.envelope_id);
        self.recipients.extend(other.recipients);
        self
    }
}

/// Reads the delivery-status fields of a text (a `message/delivery-status` body, or any
/// text that carries such fields).
pub fn read(text: &str) -> DeliveryStatus {
    let mut report = DeliveryStatus::default();
    let mut group = Group::default();
    for field in fields(text) {
        let Some((name, value)) = field else {
            // A blank line ends a recipient group.
            if group.fields.recipient.is_some() {
                push_group(&mut report, std::mem::take(&mut group).fields);
            }
            continue;
        };
        let name = name.to_ascii_lowercase();
        if name == "original-envelope-id" {
            report
                .envelope_id
                .get_or_insert_with(|| value.trim().to_string());
            continue;
        }
        if !RECIPIENT_FIELDS.contains(&name.as_str()) {
            continue;
        }
        // Groups are not always separated by blank lines: a field the current group
        // already has starts the next one.
        if group.seen.contains(&name) {
            push_group(&mut report, std::mem::take(&mut group).fields);
        }
        group.seen.push(name.clone());
        let fields = &mut group.fields;
        let value = value.trim();
        match name.as_str() {
            "final-recipient" => {
                // Final-Recipient names the address that failed: it wins over the others.
                if let Some(address) = address_of(value) {
                    fields.recipient = Some(address);
                }
            }
            "original-recipient" => {
                fields.original = address_of(value);
                if fields.recipient.is_none() {
                    fields.recipient = fields.original.clone();
                }
            }
            "x-actual-recipient" => {
                fields.actual = address_of(value);
                if fields.recipient.is_none() {
                    fields.recipient = fields.actual.clone();
                }
            }
            "action" => {
                let action = value.split([' ', '(', ';']).next().unwrap_or_default();
                fields.action = Some(action.to_ascii_lowercase());
            }
            "status" => fields.status = find_enhanced_status(value),
            "diagnostic-code" => {
                let diagnostic = cut(&collapse_whitespace(strip_type(value)), MAX_DIAGNOSTIC);
                fields.diagnostic = (!diagnostic.is_empty()).then_some(diagnostic);
            }
            _ => fields.remote_mta = Some(strip_type(value).trim().to_string()),
        }
        if report.recipients.len() >= MAX_GROUPS {
            return report;
        }
    }
    push_group(&mut report, group.fields);
    report
}

/// The per-recipient fields read here.
const RECIPIENT_FIELDS: &[&str] = &[
    "final-recipient",
    "original-recipient",
    "x-actual-recipient",
    "action",
    "status",
    "diagnostic-code",
    "remote-mta",
];

/// The recipient group being read, with the names of the fields it has had.
#[derive(Default)]
struct Group {
    fields: RecipientFields,
    seen: Vec<String>,
}

fn push_group(report: &mut DeliveryStatus, group: RecipientFields) {
    // A group with neither an address nor an outcome is noise (a stray field).
    if group.recipient.is_some() || group.action.is_some() || group.status.is_some() {
        report.recipients.push(group);
    }
}

/// Unfolded `Name: value` fields in order, `None` for a blank line; other lines are ignored.
fn fields(text: &str) -> Vec<Option<(String, String)>> {
    let mut fields: Vec<Option<(String, String)>> = Vec::new();
    let mut last_was_field = false;
    for line in text.lines() {
        if line.trim().is_empty() {
            fields.push(None);
            last_was_field = false;
            continue;
        }
        if line.starts_with([' ', '\t']) && last_was_field {
            if let Some(Some((_, value))) = fields.last_mut()
                && value.len() < 4096
            {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        last_was_field = false;
        let trimmed = line.trim_start();
        if let Some((name, value)) = trimmed.split_once(':')
            && is_field_name(name)
        {
            fields.push(Some((name.to_string(), value.trim().to_string())));
            last_was_field = true;
        }
    }
    fields
}

fn is_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 40
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `rfc822; <a@b>` → `a@b`; also accepts a bare address.
fn address_of(value: &str) -> Option<String> {
    let value = strip_type(value);
    super::freetext::addresses_in(value)
        .next()
        .map(|(_, address)| address)
}

/// Drops an RFC 3464 type prefix (`smtp;`, `dns;`, `rfc822;`, `X-Postfix;`).
fn strip_type(value: &str) -> &str {
    match value.split_once(';') {
        Some((kind, rest))
            if !kind.is_empty()
                && kind.len() < 20
                && kind
                    .trim()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            rest.trim()
        }
        _ => value.trim(),
    }
}

/// One finding per recipient group; a group without a diagnostic borrows the words the
/// human-readable part has for the same address.
pub fn findings(report: &DeliveryStatus, blocks: &[Block], context: &str) -> Vec<Finding> {
    let single = report.recipients.len() == 1;
    let forwards = forward_targets(report, blocks);
    report
        .recipients
        .iter()
        .zip(forwards)
        .map(|(group, forward)| {
            let block = forward
                .map(|at| &blocks[at])
                .or_else(|| {
                    group
                        .recipient
                        .as_ref()
                        .and_then(|address| blocks.iter().find(|b| &b.address == address))
                })
                .or_else(|| (single && blocks.len() == 1).then(|| &blocks[0]));
            let block_text = block.map(|b| collapse_whitespace(&b.text));
            // A group that names no address (an empty or local-only Final-Recipient) is
            // about the one address the human-readable part names.
            let recipient = group
                .recipient
                .clone()
                .or_else(|| block.map(|b| b.address.clone()));
            let diagnostic = group
                .diagnostic
                .clone()
                .or_else(|| block_text.as_ref().map(|t| cut(t, MAX_DIAGNOSTIC)))
                .filter(|d| !d.is_empty());
            let mut all_words = diagnostic.clone().unwrap_or_default();
            if let Some(text) = &block_text {
                all_words.push(' ');
                all_words.push_str(text);
            }
            if single {
                all_words.push(' ');
                all_words.push_str(context);
            }
            // A generic Status (5.0.0) yields to the remote's own, more specific code.
            let from_diagnostic = diagnostic.as_deref().and_then(find_enhanced_status);
            let status = match (&group.status, from_diagnostic) {
                (Some(status), Some(specific))
                    if status.ends_with(".0.0") && !specific.ends_with(".0.0") =>
                {
                    Some(specific)
                }
                (Some(status), _) => Some(status.clone()),
                (None, specific) => specific,
            };
            let reply_code = diagnostic
                .as_deref()
                .and_then(find_reply_code)
                .or_else(|| block_text.as_deref().and_then(find_reply_code));
            let original_recipient = group
                .original
                .clone()
                .or_else(|| block.and_then(|b| b.original.clone()))
                .filter(|original| recipient.as_ref() != Some(original));
            // Exim's and Sendmail's forward target: the group names the written address,
            // the text ("generated from") or X-Actual-Recipient the one that failed.
            let forwarded_to = forward
                .map(|at| blocks[at].address.clone())
                .or_else(|| group.actual.clone())
                .filter(|target| recipient.as_ref() != Some(target));
            let notice_text = block_text
                .filter(|_| group.diagnostic.is_some())
                .map(|text| cut(&text, MAX_DIAGNOSTIC));
            Finding {
                recipient,
                original_recipient,
                forwarded_to,
                notice_text,
                action: group.action.clone(),
                status,
                reply_code,
                diagnostic,
                remote_mta: group.remote_mta.clone(),
                command: find_command(&all_words),
                decided_locally: group.remote_mta.is_none() && group.diagnostic.is_none(),
            }
        })
        .collect()
}

/// For each recipient group, the block of the forward target whose words it is about.
///
/// Exim names the address as the sender wrote it in `Final-Recipient` (the group's address
/// stays that one, as Sendmail's does) and the address that failed only in its text
/// ("  team-member@...\n    (generated from team@...)") and in `X-Failed-Recipients`. An
/// alias of two members that both failed gives two groups with the same address: each takes
/// the words of one target, first the one its diagnostic quotes, then the others in the
/// text's order, so one member's cause is not read as the other's.
fn forward_targets(report: &DeliveryStatus, blocks: &[Block]) -> Vec<Option<usize>> {
    let written_and_failed = |group: &RecipientFields| -> Vec<usize> {
        let Some(written) = group.recipient.as_ref() else {
            return Vec::new();
        };
        if blocks.iter().any(|b| &b.address == written) {
            return Vec::new();
        }
        (0..blocks.len())
            .filter(|&at| blocks[at].original.as_ref() == Some(written))
            .collect()
    };
    let mut taken: Vec<usize> = Vec::new();
    let mut forwards: Vec<Option<usize>> = vec![None; report.recipients.len()];
    // First the groups whose diagnostic names their target, then the rest in order.
    for quoted_only in [true, false] {
        for (slot, group) in forwards.iter_mut().zip(&report.recipients) {
            if slot.is_some() {
                continue;
            }
            let diagnostic = group
                .diagnostic
                .as_deref()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let chosen = written_and_failed(group).into_iter().find(|at| {
                !taken.contains(at) && (!quoted_only || diagnostic.contains(&blocks[*at].address))
            });
            if let Some(at) = chosen {
                taken.push(at);
                *slot = Some(at);
            }
        }
    }
    forwards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_folded_groups_without_blank_lines() {
        let report = read(
            "Reporting-MTA: dns; mx.example.org\n\
             Original-Envelope-Id: abc123\n\
             \n\
             Final-Recipient: rfc822; <Ann@Example.net>\n\
             Action: failed\n\
             Status: 5.1.1\n\
             Diagnostic-Code: smtp; 550 5.1.1 <ann@example.net>:\n\
             \x20   Recipient address rejected: User unknown\n\
             Final-Recipient: rfc822; bob@example.net\n\
             Action: delayed\n\
             Status: 4.4.1\n",
        );
        assert_eq!(report.envelope_id.as_deref(), Some("abc123"));
        assert_eq!(report.recipients.len(), 2);
        let ann = &report.recipients[0];
        assert_eq!(ann.recipient.as_deref(), Some("ann@example.net"));
        assert_eq!(ann.status.as_deref(), Some("5.1.1"));
        assert_eq!(
            ann.diagnostic.as_deref(),
            Some("550 5.1.1 <ann@example.net>: Recipient address rejected: User unknown")
        );
        assert_eq!(report.recipients[1].action.as_deref(), Some("delayed"));
    }

    #[test]
    fn text_without_fields_has_no_recipients() {
        assert!(
            read("Hello,\nthis is not a report.\n")
                .recipients
                .is_empty()
        );
    }
}
