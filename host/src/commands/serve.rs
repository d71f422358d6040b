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
        if let Some(demo) = &server.created_demo {
            let credentials = config.data_dir.join("demo-credentials.txt");
            std::fs::write(
                &credentials,
                format!("username={}\npassword={}\n", demo.username, demo.password),
            )?;
            println!(
                "A demo account was made (login kept in {}). Send a first message:\n\n  \
                 swaks --server {} --port {} --auth-user {} --auth-password {} \\\n    \
                 --from app@example.com --to someone@example.net\n",
                credentials.display(),
                addr.ip(),
                addr.port(),
                demo.username,
                demo.password,
            );
        }
        tracing::info!(
            smtp = %addr,
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
