//! Built-in Flowstep `tracking`: rewrites the http(s) links of the html part into
//! click-tracking links and adds an open-tracking pixel. The links are made and signed by
//! the host (`tracking` capability); this step never sees the key.
//!
//! Configuration: `{"clicks": true, "opens": true}` (both default to true). A link with the
//! attribute `data-notrack` is left alone (the attribute is removed); `mailto:`, `tel:`,
//! anchors and other schemes are never rewritten.

use std::cell::{Cell, RefCell};

use lol_html::html_content::ContentType;
use lol_html::{HtmlRewriter, Settings, element};
use serde::Deserialize;
use sluice_plugin_sdk::privileged::tracking;
use sluice_plugin_sdk::{Flowstep, Message, Outcome, StepError, export_flowstep};

/// The step's JSON configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "yes")]
    clicks: bool,
    #[serde(default = "yes")]
    opens: bool,
}

fn yes() -> bool {
    true
}

/// The attribute that exempts a link from tracking.
const NO_TRACK: &str = "data-notrack";

/// Decodes the character references a URL in an attribute may carry.
fn decode_attribute(value: &str) -> String {
    value
        .replace("&amp;", "&")
        .replace("&#38;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
}

fn is_trackable(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

struct Tracking;

impl Flowstep for Tracking {
    type Config = Option<Config>;

    fn process(message: &Message, config: Option<Config>) -> Result<Outcome, StepError> {
        let config = config.unwrap_or(Config {
            clicks: true,
            opens: true,
        });
        let Some(html) = message.html() else {
            // Nothing to track in a text-only message.
            return Ok(Outcome::Continue);
        };
        let index = Cell::new(0u32);
        let pixel_placed = Cell::new(false);
        let pixel = match config.opens {
            true => Some(format!(
                r#"<img src="{}" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">"#,
                tracking::open_pixel_url(message)?
            )),
            false => None,
        };
        // The first link the host could not make, reported once the html is rewritten.
        let refused = RefCell::new(None);
        let output = RefCell::new(Vec::with_capacity(html.len() + 1024));
        let mut handlers = Vec::new();
        if config.clicks {
            handlers.push(element!("a[href]", |el| {
                if el.has_attribute(NO_TRACK) {
                    el.remove_attribute(NO_TRACK);
                    return Ok(());
                }
                let href = decode_attribute(&el.get_attribute("href").unwrap_or_default());
                if is_trackable(&href) {
                    match tracking::click_url(message, href.trim(), index.get()) {
                        Ok(url) => el.set_attribute("href", &url)?,
                        Err(error) => {
                            refused.borrow_mut().get_or_insert(error);
                        }
                    }
                    index.set(index.get() + 1);
                }
                Ok(())
            }));
        }
        if let Some(pixel) = &pixel {
            handlers.push(element!("body", |el| {
                el.append(pixel, ContentType::Html);
                pixel_placed.set(true);
                Ok(())
            }));
        }
        let mut rewriter = HtmlRewriter::new(
            Settings {
                element_content_handlers: handlers,
                ..Settings::new()
            },
            |chunk: &[u8]| output.borrow_mut().extend_from_slice(chunk),
        );
        rewriter
            .write(html.as_bytes())
            .and_then(|()| rewriter.end())
            .map_err(|error| StepError::UnsupportedMessage(format!("html: {error}")))?;
        if let Some(error) = refused.into_inner() {
            return Err(error.into());
        }
        let mut output = output.into_inner();
        if let (Some(pixel), false) = (&pixel, pixel_placed.get()) {
            output.extend_from_slice(pixel.as_bytes());
        }
        let rewritten = String::from_utf8(output)
            .map_err(|_| StepError::UnsupportedMessage("html is not UTF-8".into()))?;
        if rewritten != html {
            message.set_html(&rewritten)?;
        }
        Ok(Outcome::Continue)
    }
}

export_flowstep!(Tracking);
