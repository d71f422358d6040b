//! A real browser for tests of Sluice's web pages: Debian's `chromium`, headless, driven over
//! WebDriver by Debian's `chromedriver`, each started on loopback for one [`Browser`] and
//! stopped when it is dropped. Never a downloaded browser: the binaries come from the
//! system's packages (`apt-get install chromium chromium-driver`; `.ci/run` installs them).
//!
//! A machine without them gets [`Unavailable`]; [`launch_or_skip`] turns that into the
//! `SKIPPED module::test: why, and how to run it` line the other optional tests print, or into
//! a failure where [`REQUIRE_BROWSER`] is set (as CI sets it). A browser that is installed but
//! does not start panics: that is a broken machine, not a reason to skip.
//!
//! Each browser has its own profile (`--user-data-dir`) under `target/browser-sessions`,
//! removed when it is dropped, and saves screenshots to `target/dashboard-screenshots` so a
//! reviewer can look at the pages.

use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use thirtyfour::prelude::{WebDriverError, WebDriverResult};
use thirtyfour::session::http::{Body, HttpClient};
use thirtyfour::{By, ChromeCapabilities, ChromiumLikeCapabilities, WebDriver, WebElement};

use crate::languages::workspace;

/// Set (to anything), a missing browser fails the tests instead of skipping them.
pub const REQUIRE_BROWSER: &str = "SLUICE_REQUIRE_BROWSER";

/// Chromium's switches for a test run: no window, no sandbox (tests often run as root, where
/// Chromium's sandbox refuses to start), and nothing that reaches beyond this machine on its
/// own (component updates, sync, background requests, QUIC probes).
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // The same page size in every screenshot, whatever the machine's display.
    "--window-size=1280,1000",
];

/// How long a page, an element or chromedriver's start may take on a loaded two-core machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// Why no browser can be started on this machine: chromium or chromedriver is not installed.
#[derive(Clone, Debug)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Starts a browser for the test named `test` (`module::name`), or says on the terminal why
/// this machine cannot and how to run it elsewhere, and returns `None`. Where
/// [`REQUIRE_BROWSER`] is set, a missing browser panics instead.
pub fn launch_or_skip(test: &str) -> Option<Browser> {
    match Browser::launch() {
        Ok(browser) => Some(browser),
        Err(unavailable) => {
            if std::env::var_os(REQUIRE_BROWSER).is_some() {
                panic!("{REQUIRE_BROWSER} is set, but {unavailable}");
            }
            let module = test.split("::").next().unwrap_or(test);
            // Past the harness's capture of print!/eprint!, so a plain `cargo test` shows it.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: {unavailable}; to run it, install Debian's browser and its \
                 driver (apt-get install chromium chromium-driver) and run \
                 `cargo test --test sluice {module}::`"
            );
            None
        }
    }
}

/// A headless Chromium with its own chromedriver and profile. Its methods block the calling
/// test, and panic with the page's address when what they look for does not come.
pub struct Browser {
    driver: Option<WebDriver>,
    runtime: tokio::runtime::Runtime,
    chromedriver: ChromeDriver,
    session_dir: PathBuf,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("chromedriver", &self.chromedriver.url)
            .field("session_dir", &self.session_dir)
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a session with a fresh headless
    /// Chromium.
    pub fn launch() -> Result<Browser, Unavailable> {
        let chromium = find_program(&["chromium", "chromium-browser"])
            .ok_or_else(|| Unavailable("chromium is not installed".into()))?;
        let chromedriver_program = find_program(&["chromedriver"])
            .ok_or_else(|| Unavailable("chromedriver (chromium-driver) is not installed".into()))?;

        let session_dir = new_session_dir();
        let chromedriver = ChromeDriver::start(&chromedriver_program, &session_dir);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the WebDriver client");

        let mut capabilities = ChromeCapabilities::new();
        let chromium = chromium.to_string_lossy();
        capabilities
            .set_binary(&chromium)
            .expect("set the browser binary");
        let profile = format!("--user-data-dir={}", session_dir.join("profile").display());
        for flag in CHROMIUM_FLAGS.iter().copied().chain([profile.as_str()]) {
            capabilities.add_arg(flag).expect("add a browser switch");
        }
        let client = LoopbackClient::new();
        let driver = runtime
            .block_on(
                WebDriver::builder(chromedriver.url.as_str(), capabilities)
                    .client(client)
                    .connect(),
            )
            .unwrap_or_else(|error| {
                panic!(
                    "chromium ({chromium}) did not start under chromedriver: {error}\n\
                     chromedriver's log: {}",
                    chromedriver.log_tail()
                )
            });
        Ok(Browser {
            driver: Some(driver),
            runtime,
            chromedriver,
            session_dir,
        })
    }

    fn driver(&self) -> &WebDriver {
        self.driver
            .as_ref()
            .expect("the session is open until drop")
    }

    fn run<T>(&self, what: &str, call: impl Future<Output = WebDriverResult<T>>) -> T {
        self.runtime
            .block_on(call)
            .unwrap_or_else(|error| panic!("{what}: {error}"))
    }

    /// Opens `url` and waits until it has loaded.
    pub fn open(&self, url: &str) {
        self.run(&format!("open {url}"), self.driver().goto(url));
    }

    /// The address of the page shown now.
    pub fn url(&self) -> String {
        self.run("read the address", self.driver().current_url())
            .to_string()
    }

    /// The page's title.
    pub fn title(&self) -> String {
        self.run("read the title", self.driver().title())
    }

    /// The page's text as a reader sees it (`innerText` of the body).
    pub fn text(&self) -> String {
        self.text_of("body")
    }

    /// The visible text of the first element matching the CSS `selector`, waiting for it.
    pub fn text_of(&self, selector: &str) -> String {
        let element = self.wait_for(selector);
        self.run(&format!("read the text of {selector}"), element.text())
    }

    /// The page's HTML source as the browser holds it now.
    pub fn source(&self) -> String {
        self.run("read the page source", self.driver().source())
    }

    /// Waits until an element matches the CSS `selector`, and returns the first one.
    pub fn wait_for(&self, selector: &str) -> WebElement {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(element) = self.find(selector) {
                return element;
            }
            assert!(
                Instant::now() < deadline,
                "no element matches {selector} on {} after {PATIENCE:?}; the page says:\n{}",
                self.url(),
                self.text_now()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first element matching the CSS `selector` now, if any: for checking that
    /// something is absent (a form a viewer must not see).
    pub fn find(&self, selector: &str) -> Option<WebElement> {
        self.run(
            &format!("look for {selector}"),
            self.driver().find_all(By::Css(selector)),
        )
        .into_iter()
        .next()
    }

    /// Types `value` into the form field named `name` (an input, textarea or select), after
    /// clearing what it held.
    pub fn fill(&self, name: &str, value: &str) {
        self.fill_at(&format!("[name=\"{name}\"]"), value);
    }

    /// Types `value` into the first field matching the CSS `selector`, after clearing it (for
    /// a page with several forms whose fields share a name).
    pub fn fill_at(&self, selector: &str, value: &str) {
        let field = self.wait_for(selector);
        self.run(&format!("clear {selector}"), field.clear());
        self.run(&format!("type into {selector}"), field.send_keys(value));
    }

    /// Clicks the first element matching the CSS `selector` and waits for the page the click
    /// leads to, when it leads to one.
    pub fn click(&self, selector: &str) {
        let element = self.wait_for(selector);
        self.mark_page();
        self.run(&format!("click {selector}"), element.click());
        self.wait_for_new_page_if_any();
    }

    /// Submits the form that holds the field named `field` with its own submit button, and
    /// waits until the answer has loaded.
    pub fn submit(&self, field: &str) {
        let selector = format!("[name=\"{field}\"]");
        let element = self.wait_for(&selector);
        self.mark_page();
        // The form's own submit button, as a user would press it (requestSubmit also runs the
        // browser's checks of required fields, as a click does).
        self.run(
            &format!("submit the form of {selector}"),
            self.driver().execute(
                "const form = arguments[0].form; \
                 if (!form) { throw new Error('the field is in no form'); } \
                 form.requestSubmit();",
                vec![element.to_json().expect("an element as JSON")],
            ),
        );
        self.wait_for_new_page();
    }

    /// Runs JavaScript in the page and returns its result as JSON (for what a user cannot do
    /// by hand, e.g. removing a form's CSRF token before submitting it).
    pub fn execute(&self, script: &str) -> serde_json::Value {
        self.run(
            "run a script",
            self.driver()
                .execute(script, Vec::<serde_json::Value>::new()),
        )
        .json()
        .clone()
    }

    /// The value of the cookie `name` the browser holds for the page shown now.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.run("read the cookies", self.driver().get_all_cookies())
            .into_iter()
            .find(|cookie| cookie.name == name)
            .map(|cookie| cookie.value)
    }

    /// Puts the cookie `name` back into the browser for the page's site, HttpOnly as a server
    /// would set it: for replaying what a user's browser once held (a spent login challenge).
    pub fn set_cookie(&self, name: &str, value: &str) {
        let mut cookie = thirtyfour::Cookie::new(name, value);
        cookie.set_path("/");
        cookie.http_only = Some(true);
        cookie.same_site = Some(thirtyfour::SameSite::Strict);
        self.run(
            &format!("set the cookie {name}"),
            self.driver().add_cookie(cookie),
        );
    }

    /// Saves a screenshot of the page to `target/dashboard-screenshots/NAME.png` and returns
    /// its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let folder = screenshot_folder();
        std::fs::create_dir_all(&folder).expect("make the screenshot folder");
        let png = self.run("take a screenshot", self.driver().screenshot_as_png());
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "the screenshot is not a PNG"
        );
        let path = folder.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("save the screenshot");
        path
    }

    /// Tags the document shown now, so a later look can tell whether another has replaced it.
    fn mark_page(&self) {
        self.execute("window.__sluiceOldPage = true;");
    }

    /// Whether the document tagged by [`Self::mark_page`] is gone and its successor loaded.
    fn new_page_loaded(&self) -> bool {
        // Between documents a script can fail (no document yet): not loaded.
        self.runtime
            .block_on(self.driver().execute(
                "return window.__sluiceOldPage === undefined && document.readyState === 'complete';",
                Vec::<serde_json::Value>::new(),
            ))
            .is_ok_and(|loaded| loaded.json() == &serde_json::Value::Bool(true))
    }

    fn wait_for_new_page(&self) {
        let deadline = Instant::now() + PATIENCE;
        while !self.new_page_loaded() {
            assert!(
                Instant::now() < deadline,
                "no new page loaded after {PATIENCE:?}; still on {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// After a click that may or may not navigate: waits a moment for a navigation to begin,
    /// and when one did, for its page.
    fn wait_for_new_page_if_any(&self) {
        let settle = Instant::now() + Duration::from_millis(300);
        while Instant::now() < settle {
            if self.new_page_loaded() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let still_old = self.runtime.block_on(self.driver().execute(
            "return window.__sluiceOldPage === true;",
            Vec::<serde_json::Value>::new(),
        ));
        if !still_old.is_ok_and(|old| old.json() == &serde_json::Value::Bool(true)) {
            self.wait_for_new_page();
        }
    }

    /// The body's text, or what went wrong reading it: for failure messages.
    fn text_now(&self) -> String {
        match self.runtime.block_on(self.driver().execute(
            "return document.body ? document.body.innerText : '';",
            Vec::<serde_json::Value>::new(),
        )) {
            Ok(text) => text.json().as_str().unwrap_or_default().to_string(),
            Err(error) => format!("(unreadable: {error})"),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(driver) = self.driver.take() {
            // Closes Chromium; chromedriver is killed after it (field order is not enough:
            // the session must end while chromedriver still runs).
            let _ = self.runtime.block_on(driver.quit());
        }
        self.chromedriver.stop();
        let _ = std::fs::remove_dir_all(&self.session_dir);
    }
}

/// Where screenshots go: `target/dashboard-screenshots` in the workspace.
pub fn screenshot_folder() -> PathBuf {
    workspace().join("target/dashboard-screenshots")
}

/// A fresh folder for one browser's profile and chromedriver's log.
fn new_session_dir() -> PathBuf {
    static SESSIONS: AtomicUsize = AtomicUsize::new(0);
    let number = SESSIONS.fetch_add(1, Ordering::Relaxed);
    let dir = workspace().join(format!(
        "target/browser-sessions/{}-{number}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("profile")).expect("make the browser's profile folder");
    dir
}

/// The first of `names` found as an executable on `PATH`.
fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// A chromedriver process listening on a loopback port, killed when dropped.
struct ChromeDriver {
    child: Option<Child>,
    url: String,
    log: PathBuf,
}

impl ChromeDriver {
    /// Starts chromedriver and waits until it answers. A port another process took between
    /// choosing and binding it is retried with another.
    fn start(program: &Path, session_dir: &Path) -> ChromeDriver {
        let log = session_dir.join("chromedriver.log");
        let mut last_failure = String::new();
        for _ in 0..3 {
            let port = free_loopback_port();
            let child = Command::new(program)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|error| panic!("start {}: {error}", program.display()));
            let mut driver = ChromeDriver {
                child: Some(child),
                url: format!("http://127.0.0.1:{port}"),
                log: log.clone(),
            };
            match driver.wait_until_ready() {
                Ok(()) => return driver,
                Err(failure) => {
                    last_failure = format!("{failure}; its log: {}", driver.log_tail());
                    driver.stop();
                }
            }
        }
        panic!("chromedriver did not start: {last_failure}");
    }

    /// Polls `/status` until chromedriver says it is ready, or it exits, or time runs out.
    fn wait_until_ready(&mut self) -> Result<(), String> {
        let status = format!("{}/status", self.url);
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(exit)) = child.try_wait()
            {
                return Err(format!("chromedriver exited with {exit}"));
            }
            let ready = http
                .get(&status)
                .send()
                .and_then(|response| response.json::<serde_json::Value>())
                .is_ok_and(|body| body["value"]["ready"] == serde_json::Value::Bool(true));
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no ready answer at {status} after {PATIENCE:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The end of chromedriver's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = log.len().saturating_sub(4000);
        let start = (start..log.len())
            .find(|&index| log.is_char_boundary(index))
            .unwrap_or(log.len());
        log[start..].to_string()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port free on 127.0.0.1 a moment ago.
fn free_loopback_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// thirtyfour's requests to chromedriver, sent with the reqwest the workspace already has
/// (thirtyfour's own client would bring a second reqwest version). Never through a proxy:
/// chromedriver is on loopback.
#[derive(Clone, Debug)]
struct LoopbackClient(reqwest::Client);

impl LoopbackClient {
    fn new() -> Self {
        Self(
            reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("an HTTP client"),
        )
    }
}

#[async_trait::async_trait]
impl HttpClient for LoopbackClient {
    async fn send(
        &self,
        request: http::Request<Body<'_>>,
    ) -> WebDriverResult<http::Response<bytes::Bytes>> {
        let failed = |error: reqwest::Error| WebDriverError::RequestFailed(error.to_string());
        let (parts, body) = request.into_parts();
        let mut outgoing = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers);
        if let Body::Json(json) = body {
            outgoing = outgoing.json(json);
        }
        let response = outgoing.send().await.map_err(failed)?;
        let mut answer = http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            answer = answer.header(name, value);
        }
        let body = response.bytes().await.map_err(failed)?;
        answer
            .body(body)
            .map_err(|error| WebDriverError::RequestFailed(error.to_string()))
    }

    async fn new(&self) -> Arc<dyn HttpClient> {
        // Called when the session is dropped after its runtime is gone: a client bound to no
        // runtime yet.
        Arc::new(LoopbackClient::new())
    }
}
