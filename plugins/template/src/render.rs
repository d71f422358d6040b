//! Rendering a template's parts with minijinja. Nothing here calls the host: the step gathers
//! what a template may use into a [`RenderContext`] first, so rendering can be tested natively.

use std::collections::BTreeMap;
use std::fmt;

use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior, escape_formatter};
use serde::{Deserialize, Serialize};

use crate::text::html_to_text;

/// A template's sources. A part that is absent leaves that part of the message as it is
/// (except that an html part without a text part also writes a text part derived from it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateParts {
    pub subject: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
}

/// One part of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Subject,
    Html,
    Text,
}

impl Part {
    fn as_str(self) -> &'static str {
        match self {
            Part::Subject => "subject",
            Part::Html => "html",
            Part::Text => "text",
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a template sees of the message as it was when the step started (`message.*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageView {
    pub subject: Option<String>,
    /// Inserted unescaped into the html part: it is the application's own html.
    pub html: Option<String>,
    pub text: Option<String>,
    pub sender: String,
    pub recipient: String,
    pub attachments: Vec<AttachmentView>,
}

/// One attachment of the message, without its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttachmentView {
    pub filename: Option<String>,
    pub content_type: String,
    /// `attachment` or `inline`.
    pub disposition: String,
    pub content_id: Option<String>,
    pub size: u64,
}

/// Everything a template can read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenderContext {
    /// The submitted JSON `data`: available as `data`, and each top-level key of an object as a
    /// variable of its own.
    pub data: Option<serde_json::Value>,
    pub message: MessageView,
    /// The message's header fields (name, decoded value), in order, for `header(name)`.
    pub headers: Vec<(String, String)>,
    /// The 'view online' URL, for `online_link()`.
    pub online_link: Option<String>,
}

/// The rendered parts; `None` where the message keeps what it has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// A single line.
    pub subject: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
}

/// A part that could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    pub part: Part,
    /// The line of the part's source, when minijinja knows it.
    pub line: Option<usize>,
    /// minijinja's description of the error.
    pub detail: String,
}

impl RenderError {
    fn new(part: Part, error: &Error) -> RenderError {
        RenderError {
            part,
            line: error.line(),
            detail: error.to_string(),
        }
    }
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {line}: {}", self.part, self.detail),
            None => write!(f, "{}: {}", self.part, self.detail),
        }
    }
}

impl std::error::Error for RenderError {}

/// The names a template uses for the step's own variables and functions; a data key with one
/// of these names is reachable only as `data.<name>`.
const RESERVED: &[&str] = &["data", "message", "header", "online_link"];

/// Renders every part the template has; fails on the first part that does not render, so a
/// message is never half rendered. `name` names the template in minijinja's messages.
pub fn render(
    name: &str,
    parts: &TemplateParts,
    context: &RenderContext,
) -> Result<Rendered, RenderError> {
    let names = [Part::Subject, Part::Html, Part::Text].map(|part| format!("{name}.{part}"));
    let env = environment(context);
    let root = root_value(context);
    let render_part = |part: Part, file: &str, source: &Option<String>| {
        source
            .as_deref()
            .map(|source| {
                env.template_from_named_str(file, source)
                    .and_then(|template| template.render(&root))
                    .map_err(|error| RenderError::new(part, &error))
            })
            .transpose()
    };
    let subject = render_part(Part::Subject, &names[0], &parts.subject)?;
    let html = render_part(Part::Html, &names[1], &parts.html)?;
    let mut text = render_part(Part::Text, &names[2], &parts.text)?;
    if text.is_none()
        && let Some(html) = &html
    {
        text = Some(html_to_text(html));
    }
    Ok(Rendered {
        subject: subject.as_deref().map(single_line),
        html,
        text,
    })
}

/// Joins the lines of a rendered subject with single spaces: a header value holds one line.
pub fn single_line(subject: &str) -> String {
    subject
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The engine: strict about undefined values, escaping the html part only, and with the
/// step's functions.
fn environment(context: &RenderContext) -> Environment<'_> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|file| {
        if file.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    // A value that is present but null (a JSON null, a message without a text body) prints
    // as nothing rather than as `none`. Html escaping leaves `/` alone (minijinja's own writes
    // `&#x2f;`), so a URL from the data stays readable to the steps after this one.
    env.set_formatter(|out, state, value| {
        if value.is_none() {
            Ok(())
        } else if matches!(state.auto_escape(), AutoEscape::Html)
            && !value.is_safe()
            && !value.is_undefined()
        {
            out.write_str(&escape_html(&value.to_string()))
                .map_err(Error::from)
        } else {
            escape_formatter(out, state, value)
        }
    });
    let headers = context.headers.clone();
    env.add_function("header", move |wanted: &str| -> Value {
        headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map_or(Value::from(()), |(_, value)| Value::from(value.as_str()))
    });
    let online_link = context.online_link.clone();
    env.add_function("online_link", move || -> Result<Value, Error> {
        online_link.as_deref().map(Value::from).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                "the online link is not available",
            )
        })
    });
    env
}

/// Escapes text for html content and quoted attribute values.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The template's variables.
fn root_value(context: &RenderContext) -> Value {
    let mut root = BTreeMap::<String, Value>::new();
    if let Some(serde_json::Value::Object(fields)) = &context.data {
        for (key, value) in fields {
            if !RESERVED.contains(&key.as_str()) {
                root.insert(key.clone(), Value::from(Serde(value)));
            }
        }
    }
    root.insert(
        "data".into(),
        context
            .data
            .as_ref()
            .map_or(Value::from(()), |data| Value::from(Serde(data))),
    );
    let message = &context.message;
    let mut view = BTreeMap::<&str, Value>::new();
    view.insert("subject", Value::from(message.subject.clone()));
    view.insert(
        "html",
        message
            .html
            .as_deref()
            .map_or(Value::from(()), |html| Value::from_safe_string(html.into())),
    );
    view.insert("text", Value::from(message.text.clone()));
    view.insert("sender", Value::from(message.sender.as_str()));
    view.insert("recipient", Value::from(message.recipient.as_str()));
    view.insert("attachments", Value::from(Serde(&message.attachments)));
    root.insert("message".into(), Value::from(view));
    Value::from(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context(data: serde_json::Value) -> RenderContext {
        RenderContext {
            data: Some(data),
            ..RenderContext::default()
        }
    }

    fn parts(subject: Option<&str>, html: Option<&str>, text: Option<&str>) -> TemplateParts {
        TemplateParts {
            subject: subject.map(Into::into),
            html: html.map(Into::into),
            text: text.map(Into::into),
        }
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let context = context(json!({"name": "Tom & <Jerry> \"T\" 'J'"}));
        let rendered = render(
            "welcome",
            &parts(
                Some("Hi {{ name }}"),
                Some("<p>Hi {{ name }}</p>"),
                Some("Hi {{ name }}"),
            ),
            &context,
        )
        .unwrap();
        assert_eq!(
            rendered.subject.as_deref(),
            Some("Hi Tom & <Jerry> \"T\" 'J'")
        );
        assert_eq!(
            rendered.html.as_deref(),
            Some("<p>Hi Tom &amp; &lt;Jerry&gt; &quot;T&quot; &#39;J&#39;</p>")
        );
        assert_eq!(rendered.text.as_deref(), Some("Hi Tom & <Jerry> \"T\" 'J'"));
    }

    #[test]
    fn message_html_is_inserted_as_is_into_a_layout() {
        let mut context = context(json!({"name": "<b>Ada</b>"}));
        context.message.html = Some("<p>Your code is <b>1234</b></p>".into());
        context.message.subject = Some("Your code".into());
        let layout = "<html><body><h1>{{ message.subject }}</h1>\
            {{ message.html }}<footer>{{ name }}</footer></body></html>";
        let rendered = render("layout", &parts(None, Some(layout), None), &context).unwrap();
        assert_eq!(
            rendered.html.as_deref(),
            Some(
                "<html><body><h1>Your code</h1><p>Your code is <b>1234</b></p>\
                 <footer>&lt;b&gt;Ada&lt;/b&gt;</footer></body></html>"
            )
        );
        // No text part in the template: one is derived from the html.
        assert_eq!(
            rendered.text.as_deref(),
            Some("Your code\n\nYour code is 1234\n\n<b>Ada</b>")
        );
        assert_eq!(rendered.subject, None);
    }

    #[test]
    fn undefined_value_names_part_and_line() {
        let context = context(json!({"name": "Ada"}));
        let html = "<p>Hello {{ name }}</p>\n<p>\n{{ order.total }}</p>";
        let error = render("welcome", &parts(Some("Hi"), Some(html), None), &context).unwrap_err();
        assert_eq!(error.part, Part::Html);
        assert_eq!(error.line, Some(3));
        assert_eq!(
            error.to_string(),
            "html line 3: undefined value (in welcome.html:3)"
        );
    }

    #[test]
    fn syntax_error_names_part_and_line() {
        let context = context(json!({}));
        let text = "line one\nline two\n{% if %}\n{% endif %}";
        let error = render("receipt", &parts(None, None, Some(text)), &context).unwrap_err();
        assert_eq!(error.part, Part::Text);
        assert_eq!(error.line, Some(3));
        assert!(
            error.to_string().starts_with("text line 3: syntax error: "),
            "{error}"
        );
        assert!(
            error.to_string().ends_with("(in receipt.text:3)"),
            "{error}"
        );
    }

    #[test]
    fn an_error_in_any_part_fails_the_whole_render() {
        let context = context(json!({"name": "Ada"}));
        let error = render(
            "welcome",
            &parts(Some("{{ missing }}"), Some("<p>{{ name }}</p>"), None),
            &context,
        )
        .unwrap_err();
        assert_eq!(error.part, Part::Subject);
        assert_eq!(error.line, Some(1));
    }

    #[test]
    fn subject_is_one_line() {
        let context = context(json!({"order": "A-1\r\nBcc: x@example.com"}));
        let rendered = render(
            "s",
            &parts(Some("  Order\n  {{ order }}\n"), None, None),
            &context,
        )
        .unwrap();
        assert_eq!(
            rendered.subject.as_deref(),
            Some("Order A-1 Bcc: x@example.com")
        );
        assert_eq!(single_line("\r\n\r\n"), "");
    }

    #[test]
    fn data_message_and_functions() {
        let context = RenderContext {
            data: Some(
                json!({"user": {"name": "Ada"}, "items": [1, 2], "message": "shadowed",
                              "note": null}),
            ),
            message: MessageView {
                sender: "bounce@example.com".into(),
                recipient: "ada@example.org".into(),
                attachments: vec![AttachmentView {
                    filename: Some("invoice.pdf".into()),
                    content_type: "application/pdf".into(),
                    disposition: "attachment".into(),
                    content_id: None,
                    size: 1024,
                }],
                ..MessageView::default()
            },
            headers: vec![("X-Campaign".into(), "spring & summer".into())],
            online_link: Some("https://view.example.com/m/1?s=a&t=b".into()),
        };
        let text = "{{ user.name }} {{ data.user.name }} {{ items|length }} [{{ note }}] \
            {{ data.message }} {{ message.recipient }} {{ message.sender }} \
            {% for a in message.attachments %}{{ a.filename }}:{{ a.size }}{% endfor %} \
            {{ header('x-campaign') }} {{ header('X-Missing') is none }} {{ online_link() }}";
        let html = r#"<a href="{{ online_link() }}">{{ header("X-Campaign") }}</a>"#;
        let rendered = render("t", &parts(None, Some(html), Some(text)), &context).unwrap();
        assert_eq!(
            rendered.text.as_deref(),
            Some(
                "Ada Ada 2 [] shadowed ada@example.org bounce@example.com invoice.pdf:1024 \
                 spring & summer True https://view.example.com/m/1?s=a&t=b"
            )
        );
        assert_eq!(
            rendered.html.as_deref(),
            Some(r#"<a href="https://view.example.com/m/1?s=a&amp;t=b">spring &amp; summer</a>"#)
        );
    }

    #[test]
    fn online_link_without_a_link_is_an_error() {
        let error = render(
            "t",
            &parts(None, None, Some("{{ online_link() }}")),
            &RenderContext::default(),
        )
        .unwrap_err();
        assert_eq!(error.part, Part::Text);
        assert!(error.detail.contains("online link"), "{error}");
    }

    #[test]
    fn optional_data_is_tested_with_is_defined() {
        let context = context(json!({"name": "Ada"}));
        let text = "{% if coupon is defined %}{{ coupon }}{% else %}none{% endif %}";
        let rendered = render("t", &parts(None, None, Some(text)), &context).unwrap();
        assert_eq!(rendered.text.as_deref(), Some("none"));
        let error = render(
            "t",
            &parts(None, None, Some("{% if coupon %}x{% endif %}")),
            &context,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "text line 1: undefined value (in t.text:1)"
        );
    }

    #[test]
    fn absent_parts_stay_absent() {
        let rendered = render("t", &parts(None, None, None), &RenderContext::default()).unwrap();
        assert_eq!(rendered, Rendered::default());
    }
}
