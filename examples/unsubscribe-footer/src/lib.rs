//! A customer-style Flowstep: an unsubscribe link built from the message's `data`, added as a
//! footer to the text and html bodies and as `List-Unsubscribe` (RFC 8058 one-click).
//!
//! Configuration: `{"base_url": "https://example.com/unsubscribe"}`. The message is submitted
//! with `data` holding `{"unsubscribe_token": "..."}`; the link is
//! `<base_url>?token=<unsubscribe_token>`. The same step is written in JavaScript and Python
//! in `examples/unsubscribe-footer-js` and `examples/unsubscribe-footer-python`, with the same
//! output byte for byte.

use serde::Deserialize;
use sluice_plugin_sdk::{Flowstep, Message, Outcome, StepError, export_flowstep, log};

/// The step's JSON configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    base_url: String,
}

struct UnsubscribeFooter;

/// A token goes into a URL unencoded, so it may hold only characters that need no encoding.
fn is_token(token: &str) -> bool {
    (1..=128).contains(&token.len())
        && token
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// A base URL that can stand in a header between angle brackets and in an html attribute.
fn is_base_url(url: &str) -> bool {
    url.len() > "https://".len()
        && url.starts_with("https://")
        && url
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && !matches!(byte, b'<' | b'>' | b'"'))
}

fn unsubscribe_token(message: &Message) -> Result<String, StepError> {
    let data = message
        .data()
        .ok_or_else(|| StepError::MissingData("the message was submitted without data".into()))?;
    let data: serde_json::Value = serde_json::from_str(&data).map_err(|error| {
        StepError::MissingData(format!("the message's data is not JSON: {error}"))
    })?;
    let token = data
        .get("unsubscribe_token")
        .and_then(|token| token.as_str())
        .ok_or_else(|| StepError::MissingData("data has no unsubscribe_token".into()))?;
    if !is_token(token) {
        return Err(StepError::MissingData(
            "unsubscribe_token may hold only letters, digits, - and _".into(),
        ));
    }
    Ok(token.to_string())
}

impl Flowstep for UnsubscribeFooter {
    type Config = Config;

    fn process(message: &Message, config: Config) -> Result<Outcome, StepError> {
        if !is_base_url(&config.base_url) {
            return Err(StepError::InvalidConfig(
                "base_url must be an https URL without spaces, quotes or angle brackets".into(),
            ));
        }
        let token = unsubscribe_token(message)?;
        let separator = if config.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!("{}{separator}token={token}", config.base_url);

        let text = message.text();
        let html = message.html();
        if text.is_none() && html.is_none() {
            return Err(StepError::UnsupportedMessage(
                "the message has neither a text nor an html body".into(),
            ));
        }
        message.set_header("List-Unsubscribe", &format!("<{url}>"))?;
        message.set_header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")?;
        if let Some(text) = text {
            // The footer's lines end as the body's do: the host keeps a lone LF after a CRLF
            // as it is, which would leave a bare LF in the sent message.
            let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
            let gap = if text.ends_with('\n') { "" } else { eol };
            message.set_text(&format!("{text}{gap}{eol}-- {eol}Unsubscribe: {url}{eol}"))?;
        }
        if let Some(html) = html {
            let link = format!(
                r#"<p><a href="{}">Unsubscribe</a></p>"#,
                url.replace('&', "&amp;")
            );
            // Before the closing body tag when there is one, so the link is inside the page.
            let at = html.rfind("</body>").unwrap_or(html.len());
            message.set_html(&format!("{}{link}{}", &html[..at], &html[at..]))?;
        }
        log::info("unsubscribe link added");
        Ok(Outcome::Continue)
    }
}

export_flowstep!(UnsubscribeFooter);
