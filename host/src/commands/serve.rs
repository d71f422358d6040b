//! `sluice serve`: starts the server and runs until interrupted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sluice::config::Config;
use sluice::server::Server;

pub fn run(config_path: Option<&Path>, data: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(config_path)?;
    if let Some(data) = data {
        config.data_dir = data;
    }
    let tokio = tokio::runtime::Runtime::new()?;
    tokio.block_on(async move {
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
            println!(
                "A demo account was made (logins kept in {}). Send a first message over SMTP:\n\n  \
                 swaks --server {} --port {} --auth-user {} --auth-password {} \\\n    \
                 --from app@example.com --to someone@example.net\n\n\
                 or over the REST API:\n\n  \
                 TOKEN=$(curl -s http://{api}/oauth/token -d client_id={} -d client_secret={} \\\n    \
                 -d grant_type=client_credentials | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')\n  \
                 curl -i http://{api}/{}/messages/submit -H \"Authorization: Bearer $TOKEN\" \\\n    \
                 -H 'Content-Type: application/json' -d '{{\"messageType\":\"EMAIL\",\
                 \"senderAddress\":\"app@example.com\",\"recipientAddress\":\"someone@example.net\",\
                 \"subject\":\"Hello\",\"text\":\"Hello from Sluice\"}}'\n",
                credentials.display(),
                addr.ip(),
                addr.port(),
                demo.username,
                demo.password,
                demo.client_id,
                demo.client_secret,
                demo.account_id,
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
            println!(
                "The dashboard is at http://{dashboard}: log in as {} with the password {}, then \
                 type the code mailed to that address.\n",
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
        tokio::signal::ctrl_c().await?;
        tracing::info!("shutting down");
        drop(server);
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
