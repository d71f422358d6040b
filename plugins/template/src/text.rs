//! Plain text from html: the text alternative written when a template has an html part but no
//! text part, so that the two never say different things.
//!
//! This is not a full html parser. It reads tags, comments and character references well
//! enough for mail html: it drops what is not shown (`<head>`, `<style>`, `<script>`,
//! comments), turns line and block ends into line breaks, keeps `<pre>` as it is and writes a
//! link as `label (url)`.

use std::borrow::Cow;

/// The plain-text rendering of an html document or fragment.
pub fn html_to_text(html: &str) -> String {
    // ASCII lowercasing keeps every byte offset, so positions found in `lower` apply to `html`.
    let lower = html.to_ascii_lowercase();
    let bytes = html.as_bytes();
    let mut writer = Writer::default();
    let mut at = 0;
    while at < html.len() {
        if bytes[at] != b'<' {
            let end = html[at..]
                .find('<')
                .map_or(html.len(), |offset| at + offset);
            writer.text(&decode_entities(&html[at..end]));
            at = end;
            continue;
        }
        let rest = &html[at..];
        if let Some(comment) = rest.strip_prefix("<!--") {
            at = comment
                .find("-->")
                .map_or(html.len(), |offset| at + 4 + offset + 3);
            continue;
        }
        match bytes.get(at + 1) {
            Some(b'!' | b'?') => {
                // A doctype, CDATA or processing instruction: nothing to show.
                at = rest.find('>').map_or(html.len(), |offset| at + offset + 1);
            }
            Some(next) if *next == b'/' || next.is_ascii_alphabetic() => {
                let end = tag_end(bytes, at + 1);
                if end == html.len() {
                    // A tag cut off by the end of the input shows nothing.
                    break;
                }
                let tag = Tag::parse(&html[at + 1..end]);
                at = end + 1;
                if !tag.closing && matches!(tag.name.as_str(), "script" | "style" | "template") {
                    // Raw text up to the closing tag, which may hold anything but its own end.
                    let closing = format!("</{}", tag.name);
                    at = match lower[at..].find(&closing) {
                        Some(offset) => {
                            let close = at + offset;
                            (tag_end(bytes, close + 1) + 1).min(html.len())
                        }
                        None => html.len(),
                    };
                    continue;
                }
                writer.tag(&tag);
            }
            _ => {
                // A `<` that starts no tag is text.
                writer.text("<");
                at += 1;
            }
        }
    }
    writer.finish()
}

/// The position of the `>` that ends the tag whose name starts at `from` (or the end of the
/// input), skipping quoted attribute values.
fn tag_end(bytes: &[u8], from: usize) -> usize {
    let mut quote = None;
    for (position, byte) in bytes.iter().enumerate().skip(from) {
        match (quote, *byte) {
            (None, b'>') => return position,
            (None, b'"' | b'\'') => quote = Some(*byte),
            (Some(open), byte) if byte == open => quote = None,
            _ => {}
        }
    }
    bytes.len()
}

/// One start or end tag.
struct Tag {
    /// The lowercase element name.
    name: String,
    closing: bool,
    /// The `href` attribute, decoded, when the tag has one.
    href: Option<String>,
}

impl Tag {
    /// Parses the text between `<` and `>`.
    fn parse(source: &str) -> Tag {
        let (closing, source) = match source.strip_prefix('/') {
            Some(rest) => (true, rest),
            None => (false, source),
        };
        let name_end = source
            .find(|c: char| c.is_ascii_whitespace() || c == '/')
            .unwrap_or(source.len());
        let name = source[..name_end].to_ascii_lowercase();
        let href = if !closing && name == "a" {
            attribute(&source[name_end..], "href")
        } else {
            None
        };
        Tag {
            name,
            closing,
            href,
        }
    }
}

/// The decoded value of the attribute `wanted` in a tag's attribute list.
fn attribute(source: &str, wanted: &str) -> Option<String> {
    let bytes = source.as_bytes();
    let mut at = 0;
    let skip_space = |mut at: usize| {
        while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b'/') {
            at += 1;
        }
        at
    };
    loop {
        at = skip_space(at);
        if at >= bytes.len() {
            return None;
        }
        let name_start = at;
        while at < bytes.len()
            && !bytes[at].is_ascii_whitespace()
            && !matches!(bytes[at], b'=' | b'/')
        {
            at += 1;
        }
        let name = &source[name_start..at];
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let mut value = "";
        if bytes.get(at) == Some(&b'=') {
            at += 1;
            while at < bytes.len() && bytes[at].is_ascii_whitespace() {
                at += 1;
            }
            match bytes.get(at) {
                Some(&quote @ (b'"' | b'\'')) => {
                    let start = at + 1;
                    let end = source[start..]
                        .find(quote as char)
                        .map_or(source.len(), |offset| start + offset);
                    value = &source[start..end];
                    at = (end + 1).min(source.len());
                }
                _ => {
                    let start = at;
                    while at < bytes.len() && !bytes[at].is_ascii_whitespace() {
                        at += 1;
                    }
                    value = &source[start..at];
                }
            }
        } else if name.is_empty() {
            // A stray character; step over it so the loop always advances.
            at += 1;
        }
        if name.eq_ignore_ascii_case(wanted) {
            return Some(decode_entities(value).into_owned());
        }
    }
}

/// Decodes numeric character references and the named ones mail html commonly uses; an
/// unknown reference is kept as written.
fn decode_entities(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest[1..]
            .char_indices()
            .take(33)
            .find(|&(_, c)| c == ';')
            .and_then(|(semi, _)| Some((entity(&rest[1..1 + semi])?, semi + 2)));
        match decoded {
            Some((replacement, length)) => {
                out.push_str(&replacement);
                rest = &rest[length..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The text of one character reference, given without `&` and `;`.
fn entity(name: &str) -> Option<Cow<'static, str>> {
    if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse().ok()?,
        };
        let c = char::from_u32(code).filter(|&c| c != '\0')?;
        return Some(Cow::Owned(c.to_string()));
    }
    let text = match name {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        // A non-breaking space is just a space in plain text.
        "nbsp" | "ensp" | "emsp" | "thinsp" => " ",
        "zwnj" | "zwj" | "shy" => "",
        "copy" => "©",
        "reg" => "®",
        "trade" => "™",
        "hellip" => "…",
        "mdash" => "—",
        "ndash" => "–",
        "lsquo" => "‘",
        "rsquo" => "’",
        "sbquo" => "‚",
        "ldquo" => "“",
        "rdquo" => "”",
        "bdquo" => "„",
        "laquo" => "«",
        "raquo" => "»",
        "bull" => "•",
        "middot" => "·",
        "euro" => "€",
        "pound" => "£",
        "yen" => "¥",
        "cent" => "¢",
        "sect" => "§",
        "deg" => "°",
        "times" => "×",
        "divide" => "÷",
        "auml" => "ä",
        "ouml" => "ö",
        "uuml" => "ü",
        "Auml" => "Ä",
        "Ouml" => "Ö",
        "Uuml" => "Ü",
        "szlig" => "ß",
        "eacute" => "é",
        "egrave" => "è",
        "agrave" => "à",
        "ccedil" => "ç",
        _ => return None,
    };
    Some(Cow::Borrowed(text))
}

/// An open `<a href>`: its target and where its label starts in the output.
struct Link {
    href: String,
    label_start: usize,
}

/// Builds the text: collapses white space and turns breaks requested by tags into at most one
/// empty line.
#[derive(Default)]
struct Writer {
    out: String,
    /// A space is owed before the next visible character.
    space: bool,
    /// Line breaks owed before the next visible character (1: new line, 2: empty line).
    breaks: usize,
    /// Inside `<head>` or `<title>`: nothing is shown.
    hidden: usize,
    /// Inside `<pre>`: white space is kept.
    pre: usize,
    /// Nesting of `<ul>`/`<ol>`.
    lists: usize,
    link: Option<Link>,
}

impl Writer {
    fn text(&mut self, text: &str) {
        if self.hidden > 0 {
            return;
        }
        if self.pre > 0 {
            for c in text.chars().filter(|&c| c != '\r') {
                self.flush();
                self.out.push(c);
            }
            return;
        }
        for c in text.chars() {
            if c.is_ascii_whitespace() || c == '\u{a0}' {
                if !self.at_line_start() {
                    self.space = true;
                }
            } else {
                self.flush();
                self.out.push(c);
            }
        }
    }

    fn at_line_start(&self) -> bool {
        self.breaks > 0 || self.out.is_empty() || self.out.ends_with('\n')
    }

    /// Writes the space or line breaks owed before a visible character.
    fn flush(&mut self) {
        if self.breaks > 0 {
            if !self.out.is_empty() {
                let kept = self.out.trim_end_matches([' ', '\t']).len();
                self.out.truncate(kept);
                let present = self.out.len() - self.out.trim_end_matches('\n').len();
                for _ in present..self.breaks.min(2) {
                    self.out.push('\n');
                }
            }
            self.breaks = 0;
        } else if self.space {
            self.out.push(' ');
        }
        self.space = false;
    }

    /// Owes at least `breaks` line breaks (1: a new line, 2: an empty line between).
    fn block(&mut self, breaks: usize) {
        self.breaks = self.breaks.max(breaks);
        self.space = false;
    }

    fn tag(&mut self, tag: &Tag) {
        let name = tag.name.as_str();
        match name {
            "head" | "title" => {
                if tag.closing {
                    self.hidden = self.hidden.saturating_sub(1);
                } else {
                    self.hidden += 1;
                }
            }
            // The body starts: whatever the head left open is over.
            "body" if !tag.closing => self.hidden = 0,
            "br" => {
                self.breaks += 1;
                self.space = false;
            }
            "a" => {
                self.close_link();
                if !tag.closing
                    && let Some(href) = &tag.href
                {
                    self.link = Some(Link {
                        href: href.trim().to_owned(),
                        label_start: self.out.len(),
                    });
                }
            }
            "pre" => {
                self.block(2);
                if tag.closing {
                    self.pre = self.pre.saturating_sub(1);
                } else {
                    self.pre += 1;
                }
            }
            "ul" | "ol" => {
                if tag.closing {
                    self.lists = self.lists.saturating_sub(1);
                }
                self.block(if self.lists == 0 { 2 } else { 1 });
                if !tag.closing {
                    self.lists += 1;
                }
            }
            "li" => {
                self.block(1);
                if !tag.closing && self.hidden == 0 {
                    self.flush();
                    self.out.push('-');
                    self.space = true;
                }
            }
            "td" | "th" if !self.at_line_start() => self.space = true,
            "p" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "table" | "blockquote" | "hr"
            | "dl" | "figure" | "address" => self.block(2),
            "div" | "tr" | "dt" | "dd" | "section" | "article" | "header" | "footer" | "nav"
            | "main" | "aside" | "form" | "fieldset" | "figcaption" | "center" | "caption"
            | "tbody" | "thead" | "tfoot" | "body" | "html" => self.block(1),
            _ => {}
        }
    }

    /// Ends the open link: its target follows its label unless the label already says it.
    fn close_link(&mut self) {
        let Some(link) = self.link.take() else {
            return;
        };
        let href = link.href;
        let lower = href.to_ascii_lowercase();
        if href.is_empty() || href.starts_with('#') || lower.starts_with("javascript:") {
            return;
        }
        let label = self.out[link.label_start..].trim();
        if label.is_empty() {
            self.flush();
            self.out.push_str(&href);
            return;
        }
        if same_target(label, &href) {
            return;
        }
        self.out.push_str(" (");
        self.out.push_str(&href);
        self.out.push(')');
    }

    fn finish(mut self) -> String {
        self.close_link();
        let end = self.out.trim_end().len();
        self.out.truncate(end);
        let start = self.out.len() - self.out.trim_start_matches('\n').len();
        self.out.split_off(start)
    }
}

/// Whether a link's label is its target, written out (with or without the scheme, a trailing
/// slash, or `mailto:`).
fn same_target(label: &str, href: &str) -> bool {
    let bare = |s: &str| -> String {
        let lower = s.trim().to_ascii_lowercase();
        ["mailto:", "tel:", "https://", "http://"]
            .iter()
            .find_map(|scheme| lower.strip_prefix(scheme))
            .unwrap_or(&lower)
            .trim_end_matches('/')
            .to_owned()
    };
    bare(label) == bare(href)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_and_line_breaks() {
        let html = "<p>Hello   Ada,</p>\n  <p>Your order\n has shipped.<br>Thanks!</p>";
        assert_eq!(
            html_to_text(html),
            "Hello Ada,\n\nYour order has shipped.\nThanks!"
        );
    }

    #[test]
    fn head_style_and_script_are_dropped() {
        let html = "<!DOCTYPE html><html><head><title>Welcome</title>\
            <style>p { color: red; } a > b {}</style></head>\
            <body><!-- a comment <p>not shown</p> --><script>if (a < b) { x(\"</p>\"); }</script>\
            <p>Shown</p></body></html>";
        assert_eq!(html_to_text(html), "Shown");
    }

    #[test]
    fn links_show_their_target() {
        let html =
            r#"<p>Read <a href="https://example.com/a?x=1&amp;y=2" class="btn">the guide</a>.</p>"#;
        assert_eq!(
            html_to_text(html),
            "Read the guide (https://example.com/a?x=1&y=2)."
        );
    }

    #[test]
    fn links_that_show_their_target_are_not_repeated() {
        let html = r##"<a href="https://example.com/">example.com</a>
            <a href='mailto:help@example.com'>help@example.com</a>
            <a href="#top">Top</a> <a href="https://example.com/x"><img src="logo.png"></a>"##;
        assert_eq!(
            html_to_text(html),
            "example.com help@example.com Top https://example.com/x"
        );
    }

    #[test]
    fn entities_are_decoded() {
        let html = "Fish &amp; chips &lt;3 &quot;yes&quot; &#39;a&#x27; caf&eacute; 10&nbsp;&euro; &bogus; & more";
        assert_eq!(
            html_to_text(html),
            "Fish & chips <3 \"yes\" 'a' café 10 € &bogus; & more"
        );
    }

    #[test]
    fn lists_tables_and_pre() {
        let html = "<ul><li>One</li><li>Two</li></ul><table><tr><td>A</td><td>B</td></tr>\
            <tr><td>C</td><td>D</td></tr></table><pre>  keep\n    this</pre>after";
        assert_eq!(
            html_to_text(html),
            "- One\n- Two\n\nA B\nC D\n\n  keep\n    this\n\nafter"
        );
    }

    #[test]
    fn stray_angle_brackets_and_blank_runs() {
        let html = "1 < 2 and 3 > 2<br><br><br><br>end <p></p><p></p>";
        assert_eq!(html_to_text(html), "1 < 2 and 3 > 2\n\nend");
    }

    #[test]
    fn unterminated_markup_does_not_panic() {
        assert_eq!(html_to_text("text <a href=\"x"), "text");
        assert_eq!(html_to_text("a <!-- open"), "a");
        assert_eq!(html_to_text("<style>never closed"), "");
        assert_eq!(html_to_text("&#xZZ; &#0; &"), "&#xZZ; &#0; &");
    }
}
