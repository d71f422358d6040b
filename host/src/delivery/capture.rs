//! The capture: mail for the domains reserved for examples (RFC 2606: `example.com`,
//! `example.net`, `example.org` and the `.example` top-level domain) is kept in the data
//! folder instead of being sent. Those domains never take mail (example.com/.net/.org publish
//! a null MX), so without the capture a first try to `someone@example.net` hard-bounces and
//! puts the address on the filter list, and the second try is rejected.
//!
//! A captured message is recorded as DELIVERED to the capture, never to a mail server: its
//! event names `sluice-capture` as the MTA, its reply says the message was not sent, and the
//! copy (with the Return-Path and Delivered-To a local delivery adds) is at
//! `captured/<message id>.eml` under the data folder. On in the embedded default
//! configuration; `[delivery] capture_example_domains = false` turns it off. A static route
//! that covers the domain (its own or `*`) wins: an operator who routes mail somewhere
//! meant it to go there.

use std::path::{Path, PathBuf};

use crate::store::{AttemptRecord, Event, EventKind, MessageStatus, now_millis};

/// The MTA a captured message is recorded as delivered to, in place of a mail server's name.
pub const CAPTURE_MTA: &str = "sluice-capture";

/// The folder under the data folder that captured copies are written to.
pub const CAPTURE_FOLDER: &str = "captured";

/// Whether `domain` is reserved for examples by RFC 2606: `example.com`, `example.net`,
/// `example.org` (and names under them) or anything under the `.example` top-level domain.
pub fn is_example_domain(domain: &str) -> bool {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let under = |parent: &str| {
        domain == parent
            || domain
                .strip_suffix(parent)
                .is_some_and(|rest| rest.ends_with('.'))
    };
    ["example.com", "example.net", "example.org", "example"]
        .into_iter()
        .any(under)
}

/// Keeps messages for example domains in a folder instead of sending them.
#[derive(Clone, Debug)]
pub struct Capture {
    folder: PathBuf,
}

impl Capture {
    /// A capture writing into `captured/` under `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            folder: data_dir.join(CAPTURE_FOLDER),
        }
    }

    /// Where the copy of message `id` is written.
    pub fn path_of(&self, id: &str) -> PathBuf {
        self.folder.join(format!("{id}.eml"))
    }

    /// Writes the message as a local delivery would (Return-Path and Delivered-To above the
    /// bytes that would have been sent) and returns what to record: DELIVERED to the capture,
    /// or a temporary failure when the file cannot be written, so the message is tried again
    /// like one whose server did not answer.
    pub async fn keep(
        &self,
        id: &str,
        mail_from: &str,
        recipient: &str,
        body: &[u8],
    ) -> Result<AttemptRecord, std::io::Error> {
        let path = self.path_of(id);
        let mut copy =
            format!("Return-Path: <{mail_from}>\r\nDelivered-To: {recipient}\r\n").into_bytes();
        copy.extend_from_slice(body);
        let target = path.clone();
        // The copy holds a recipient's mail: readable by the host's user only.
        tokio::task::spawn_blocking(move || crate::private_file::write_private(&target, &copy))
            .await
            .map_err(std::io::Error::other)??;
        let domain = recipient.rsplit_once('@').map_or("", |(_, domain)| domain);
        let detail = serde_json::json!({
            "reply": format!(
                "250 2.0.0 captured, not sent: {domain} is reserved for examples (RFC 2606)"
            ),
            "mx": CAPTURE_MTA,
            "captured": format!("{CAPTURE_FOLDER}/{id}.eml"),
        });
        Ok(AttemptRecord::Final {
            status: MessageStatus::Delivered,
            events: vec![Event {
                kind: EventKind::Delivered,
                at: now_millis(),
                detail: Some(detail.to_string()),
            }],
            filter: None,
        })
    }

    /// The captured copies kept now, counted up to `limit`. Reads the folder: call it off
    /// async workers.
    pub fn count(&self, limit: usize) -> usize {
        self.copies().take(limit).count()
    }

    /// Removes every captured copy (the messages' records and events stay) and answers how
    /// many were removed. Reads and writes the folder: call it off async workers.
    pub fn purge(&self) -> std::io::Result<usize> {
        let mut removed = 0;
        for path in self.copies() {
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                // Removed meanwhile (another purge): not an error.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(removed)
    }

    /// The captured copies in the folder: its `.eml` files (none when there is no folder).
    fn copies(&self) -> impl Iterator<Item = PathBuf> {
        std::fs::read_dir(&self.folder)
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let path = entry.path();
                (entry.file_type().ok()?.is_file()
                    && path.extension().is_some_and(|extension| extension == "eml"))
                .then_some(path)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_purge_removes_the_captured_copies_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let capture = Capture::new(dir.path());
        assert_eq!(capture.count(10), 0, "no folder yet");
        assert_eq!(capture.purge().unwrap(), 0);
        for id in ["m1", "m2"] {
            capture
                .keep(
                    id,
                    "a@example.com",
                    "b@example.net",
                    b"Subject: x\r\n\r\nx\r\n",
                )
                .await
                .unwrap();
        }
        let other = dir.path().join(CAPTURE_FOLDER).join("notes.txt");
        std::fs::write(&other, "kept").unwrap();
        assert_eq!(capture.count(10), 2);
        assert_eq!(capture.count(1), 1);
        assert_eq!(capture.purge().unwrap(), 2);
        assert_eq!(capture.count(10), 0);
        assert!(other.exists(), "only captured copies are removed");
    }

    #[test]
    fn only_the_domains_reserved_for_examples_are_captured() {
        for reserved in [
            "example.com",
            "EXAMPLE.NET",
            "example.org.",
            "mail.example.com",
            "shop.example",
            "a.b.example",
            "example",
        ] {
            assert!(is_example_domain(reserved), "{reserved}");
        }
        for real in [
            "gmail.com",
            "myexample.com",
            "example.co",
            "example.com.au",
            "example.nl",
            "notexample",
            "example.test",
            "",
        ] {
            assert!(!is_example_domain(real), "{real}");
        }
    }

    #[tokio::test]
    async fn a_captured_message_is_written_and_recorded_as_delivered_to_the_capture() {
        let dir = tempfile::tempdir().unwrap();
        let capture = Capture::new(dir.path());
        let record = capture
            .keep(
                "m1",
                "b+m1.mac@bounce.sluice.example",
                "ann@example.net",
                b"Subject: Hi\r\n\r\nHello\r\n",
            )
            .await
            .unwrap();
        let written = std::fs::read(dir.path().join("captured/m1.eml")).unwrap();
        assert_eq!(
            written,
            b"Return-Path: <b+m1.mac@bounce.sluice.example>\r\nDelivered-To: ann@example.net\r\n\
              Subject: Hi\r\n\r\nHello\r\n"
        );
        let AttemptRecord::Final { status, events, .. } = record else {
            panic!("not final: {record:?}");
        };
        assert_eq!(status, MessageStatus::Delivered);
        assert_eq!(events[0].kind, EventKind::Delivered);
        let detail: serde_json::Value =
            serde_json::from_str(events[0].detail.as_deref().unwrap()).unwrap();
        assert_eq!(detail["mx"], CAPTURE_MTA);
        assert_eq!(detail["captured"], "captured/m1.eml");
        assert!(
            detail["reply"]
                .as_str()
                .unwrap()
                .contains("not sent: example.net is reserved"),
            "{detail}"
        );
    }
}
