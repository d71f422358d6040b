//! Rendering: the page templates embedded in the binary, the layout every page shares, the
//! style sheet, and the headers that keep pages from being framed, cached or sniffed.

use axum::extract::{Form, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::{Environment, Value, context};
use serde::Deserialize;

use super::DashboardState;
use super::session::{ACCOUNT_COOKIE, Refusal, Viewer, set_cookie};
use crate::access::Action;

/// Every page template, by name.
const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    ("login.html", include_str!("templates/login.html")),
    ("code.html", include_str!("templates/code.html")),
    ("reset.html", include_str!("templates/reset.html")),
    (
        "new_password.html",
        include_str!("templates/new_password.html"),
    ),
    ("overview.html", include_str!("templates/overview.html")),
    ("messages.html", include_str!("templates/messages.html")),
    ("message.html", include_str!("templates/message.html")),
    ("filters.html", include_str!("templates/filters.html")),
    ("users.html", include_str!("templates/users.html")),
    ("audit.html", include_str!("templates/audit.html")),
    ("sending.html", include_str!("templates/sending.html")),
    ("security.html", include_str!("templates/security.html")),
    ("operator.html", include_str!("templates/operator.html")),
    ("flows.html", include_str!("templates/flows.html")),
    ("flow.html", include_str!("templates/flow.html")),
    ("simulate.html", include_str!("templates/simulate.html")),
    ("sources.html", include_str!("templates/sources.html")),
    ("plugins.html", include_str!("templates/plugins.html")),
    ("classifier.html", include_str!("templates/classifier.html")),
    ("templates.html", include_str!("templates/templates.html")),
    ("template.html", include_str!("templates/template.html")),
    ("not_found.html", include_str!("templates/not_found.html")),
    ("resent.html", include_str!("templates/resent.html")),
];

const STYLE: &str = include_str!("templates/style.css");

/// The compiled templates.
pub(super) struct Templates {
    environment: Environment<'static>,
}

impl Templates {
    /// Compiles every template (a broken one fails the dashboard's own tests).
    pub(super) fn new() -> Self {
        let mut environment = Environment::new();
        // Names end in .html, so every value is HTML-escaped unless a template says otherwise.
        for (name, source) in TEMPLATES {
            environment
                .add_template(name, source)
                .unwrap_or_else(|error| panic!("dashboard template {name}: {error:#}"));
        }
        environment.add_filter("time", format_time);
        Self { environment }
    }

    /// Renders `name` with `context`.
    pub(super) fn render(&self, name: &str, context: Value) -> Response {
        match self
            .environment
            .get_template(name)
            .and_then(|template| template.render(context))
        {
            Ok(html) => Html(html).into_response(),
            Err(error) => super::session::internal(format!("template {name}: {error:#}")),
        }
    }
}

/// Milliseconds since the epoch as `2026-11-30 12:00:05 UTC`.
fn format_time(millis: u64) -> String {
    crate::timestamp::iso8601(millis)
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
        + " UTC"
}

/// What the layout needs of a logged-in viewer: who, where, which links to show.
pub(super) fn frame(state: &DashboardState, viewer: &Viewer, section: &str) -> Value {
    let accounts = if viewer.is_operator() {
        state.store.accounts().unwrap_or_default()
    } else {
        Vec::new()
    };
    context! {
        section => section,
        viewer_email => &viewer.user.email,
        role => viewer.user.role.as_str(),
        account_id => viewer.account_id,
        operator => viewer.is_operator(),
        accounts => accounts.iter().map(|account| context! { id => account.id, name => &account.name }).collect::<Vec<_>>(),
        csrf => &viewer.csrf_token,
        may_edit => viewer.may(Action::Edit),
        may_send => viewer.may(Action::Send),
        may_manage_users => viewer.may(Action::ManageUsers),
        may_configure => viewer.may(Action::Configure),
    }
}

/// The choice the last segment of a form's path names (`/up`, `/delete`, ...) among
/// `choices`; any other word is a page that does not exist.
pub(super) fn path_choice<T: Copy>(name: &str, choices: &[(&str, T)]) -> Result<T, Refusal> {
    choices
        .iter()
        .find(|(word, _)| *word == name)
        .map(|(_, choice)| *choice)
        .ok_or(Refusal::NotFound("No such page."))
}

/// Errors of one form shown at most: a form of a million wrong lines gets a page of a few,
/// not one of a million.
pub(super) const MAX_ERRORS_SHOWN: usize = 10;

/// What a page quotes of a line a user typed: its start, debug-quoted.
pub(super) fn quoted(line: &str) -> String {
    const SHOWN_CHARS: usize = 80;
    match line.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => format!("{:?}…", &line[..end]),
        None => format!("{line:?}"),
    }
}

/// The page's lines for a list of API errors: `field: message`.
pub(super) fn error_lines(error: &crate::api::ApiError) -> Vec<String> {
    error
        .errors()
        .iter()
        .map(|field| match &field.field {
            Some(name) => format!("{name}: {}", field.default_message),
            None => field.default_message.clone(),
        })
        .collect()
}

/// Renders a logged-in page: `page` merged over the layout's frame.
pub(super) fn render_page(
    state: &DashboardState,
    viewer: &Viewer,
    template: &str,
    section: &str,
    page: Value,
) -> Response {
    let context = context! { ..page, ..frame(state, viewer, section) };
    state.templates.render(template, context)
}

/// A page that also answers a form: its errors shown (in `errors`), and the status 400 when
/// there are any, so a refused form never looks like a success.
pub(super) fn render_form_page(
    state: &DashboardState,
    viewer: &Viewer,
    template: &str,
    section: &str,
    errors: Vec<String>,
    page: Value,
) -> Response {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let mut response = render_page(
        state,
        viewer,
        template,
        section,
        context! { errors => errors, ..page },
    );
    *response.status_mut() = status;
    response
}

/// The style sheet.
pub(super) async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

/// Any other path.
pub(super) async fn not_found(State(state): State<DashboardState>) -> Response {
    let mut page = state.templates.render("not_found.html", context! {});
    *page.status_mut() = StatusCode::NOT_FOUND;
    page
}

/// The account an operator chooses to look at.
#[derive(Deserialize)]
pub(super) struct AccountChoice {
    account: u64,
    /// Missing counts as wrong: refused with the CSRF answer, not a parse error.
    #[serde(default)]
    csrf: String,
}

/// Remembers which account an operator looks at.
pub(super) async fn choose_account(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Form(choice): Form<AccountChoice>,
) -> Response {
    if let Err(refusal) = viewer.check_csrf(&choice.csrf) {
        return refusal.into_response();
    }
    if !viewer.is_operator() {
        return super::session::refused();
    }
    (
        [(
            header::SET_COOKIE,
            set_cookie(&state, ACCOUNT_COOKIE, &choice.account.to_string(), None),
        )],
        Redirect::to("/"),
    )
        .into_response()
}

/// Headers every answer carries: no framing (the archived copy sets its own, stricter
/// policy), no inline script, no caching of pages with account data, no MIME sniffing.
pub(super) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let defaults = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}
