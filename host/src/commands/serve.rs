//! `sluice serve`: starts the server and runs until interrupted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sluice::config::Config;
use sluice::delivery::capture::{CAPTURE_FOLDER, CAPTURE_MTA};
use sluice::server::{DemoCredentials, Server};

/// Where the first try sends: a domain reserved for examples, so with the capture on (the
/// default) the message is kept on this machine instead of bouncing.
const FIRST_TRY_RECIPIENT: &str = "someone@example.net";
/// The sender of the first try.
const FIRST_TRY_SENDER: &str = "app@example.com";

pub fn run(config_path: Option<&Path>, data: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(config_path)?;
    if let Some(data) = data {
        config.data_dir = data;
    }
    let tokio = tokio::runtime::Runtime::new()?;
    tokio.block_on(async move {
        // Listened for before the server starts: a signal during the start (the node may
        // already be in the cluster's list) then stops it cleanly once started, where the
        // default action would end the process on the spot.
        let stop = StopSignals::listen()?;
        let server = Server::start(config.clone()).await?;
        let addr = server.smtp_addr;
        let api = server.api_addr;
        if let Some(demo) = &server.created_demo {
            let credentials = config.data_dir.join("demo-credentials.txt");
            std::fs::write(
                &credentials,
                format!(
                    "smtp_username={}\nsmtp_password={}\napi_client_id={}\napi_client_secret={}\n",
                    demo.username, demo.password, demo.client_id, demo.client_secret
                ),
            )?;
            print!(
                "{}",
                first_run_text(&config, &server, demo, &credentials)
            );
        }
        if let (Some(demo), Some(dashboard)) = (&server.created_demo, server.dashboard_addr) {
            std::fs::write(
                config.data_dir.join("demo-dashboard.txt"),
                format!(
                    "dashboard_url=http://{dashboard}\ndashboard_email={}\ndashboard_password={}\n",
                    demo.dashboard_email, demo.dashboard_password
                ),
            )?;
            // The demo owner's address is an example domain: its code is in the capture.
            let code_at = if config.delivery.capture_example_domains {
                format!(
                    " (the capture keeps it: the newest file in {} with Delivered-To: {})",
                    config.data_dir.join(CAPTURE_FOLDER).display(),
                    demo.dashboard_email
                )
            } else {
                String::new()
            };
            println!(
                "The dashboard is at http://{dashboard}: log in as {} with the password {}, then \
                 type the code mailed to that address{code_at}.\n",
                demo.dashboard_email, demo.dashboard_password,
            );
        }
        let (dkim_name, dkim_value) = server.dkim.platform_record();
        println!("Publish the platform's DKIM key as TXT at {dkim_name}:\n  {dkim_value}\n");
        if let Some(mx) = server.mx_addr {
            println!(
                "Returned mail (bounces, feedback reports) is taken at {mx}: point the MX of {} there.\n",
                config.dkim.return_path_domain
            );
        }
        tracing::info!(
            smtp = %addr,
            api = %api,
            dashboard = ?server.dashboard_addr,
            mx = ?server.mx_addr,
            data = %config.data_dir.display(),
            plugins = %config.plugins_path().display(),
            loaded = ?server.plugins.names(),
            "sluice is running"
        );
        let signal = stop.next().await;
        tracing::info!(signal, "shutting down");
        server.stop().await;
        drop(server);
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The signals that stop the server: Ctrl-C (SIGINT) at a terminal, SIGTERM from a service
/// manager (systemd, a container runtime), whose default action would end the process
/// without its leaving the cluster.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Takes both signals over from their default action, from now on.
    fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for one of them (one that came before is not missed); returns its name.
    async fn next(mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// What a newcomer reads after the first start: how to send a first message over SMTP and
/// over the REST API, where it ends up, and the API call that shows it with its events.
fn first_run_text(
    config: &Config,
    server: &Server,
    demo: &DemoCredentials,
    credentials: &Path,
) -> String {
    let smtp = server.smtp_addr;
    let api = server.api_addr;
    let account = demo.account_id;
    let mut text = format!(
        "A demo account was made (logins kept in {credentials}). Send a first message over SMTP:\n\n  \
         swaks --server {smtp_host} --port {smtp_port} --auth-user {user} --auth-password {password} \\\n    \
         --from {FIRST_TRY_SENDER} --to {FIRST_TRY_RECIPIENT}\n\n\
         or over the REST API:\n\n  \
         TOKEN=$(curl -s http://{api}/oauth/token -d client_id={client_id} -d client_secret={secret} \\\n    \
         -d grant_type=client_credentials | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')\n  \
         curl -i http://{api}/{account}/messages/submit -H \"Authorization: Bearer $TOKEN\" \\\n    \
         -H 'Content-Type: application/json' -d '{{\"messageType\":\"EMAIL\",\
         \"senderAddress\":\"{FIRST_TRY_SENDER}\",\"recipientAddress\":\"{FIRST_TRY_RECIPIENT}\",\
         \"subject\":\"Hello\",\"text\":\"Hello from Sluice\"}}'\n\n",
        credentials = credentials.display(),
        smtp_host = smtp.ip(),
        smtp_port = smtp.port(),
        user = demo.username,
        password = demo.password,
        client_id = demo.client_id,
        secret = demo.client_secret,
    );
    let steps = &config.demo.flow_steps;
    if !steps.is_empty() {
        text.push_str(&format!(
            "The demo account's default flow runs these steps on every message: {}.\n",
            steps.join(" -> ")
        ));
    }
    if config.delivery.capture_example_domains {
        text.push_str(&format!(
            "Mail to example.com, example.net, example.org and *.example (RFC 2606) is not sent \
             unless a [delivery.routes] entry sends it:\nit is kept in {captured}/<message id>.eml \
             and shown as DELIVERED to {CAPTURE_MTA}\n([delivery] capture_example_domains = false \
             turns this off).\n",
            captured = config.data_dir.join(CAPTURE_FOLDER).display(),
        ));
    } else {
        text.push_str(&format!(
            "The capture of example domains is off: put an address you read in place of \
             {FIRST_TRY_RECIPIENT}\n(example.net takes no mail, so a message to it bounces and \
             the address goes on the filter list).\n"
        ));
    }
    text.push_str(&format!(
        "See the messages, newest first, with their events (after the TOKEN line above):\n\n  \
         curl -s 'http://{api}/{account}/messages?addevents=true' -H \"Authorization: Bearer $TOKEN\"\n\n"
    ));
    // The dashboard's address and the demo owner's login follow, printed by `run` when the
    // dashboard is served.
    text
}
