//! Loopback peers for Sluice's tests and benches, each started on 127.0.0.1 and stopped when
//! dropped: a scriptable SMTP sink that records what it receives, a DNS server with a zone the
//! test sets, a webhook receiver that answers by a rule, and for benches an SMTP sink that only
//! notes when each message arrived. They know nothing of Sluice itself, so tests and benches
//! alike can use them. Beside them, builds of the Flowsteps written in JavaScript and Python,
//! with their pinned toolchains kept under `target/`, and a headless Chromium driven over
//! WebDriver for tests of the web pages, and fresh PostgreSQL databases for the store's tests.

pub mod arrivals;
pub mod browser;
pub mod dns;
pub mod languages;
pub mod postgres;
pub mod receiver;
pub mod sink;
