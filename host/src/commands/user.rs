//! `sluice user add`: makes a dashboard user in a stopped server's store and prints the link
//! it sets its password with (the dashboard's own "invite" mails the same link).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use sluice::config::Config;
use sluice::store::{NewUser, Role, Store};

#[derive(Subcommand)]
pub enum UserCommand {
    /// Adds a user and prints the one-time link it chooses its password with.
    Add {
        /// The account it belongs to; left out for an operator.
        #[arg(long)]
        account: Option<u64>,
        /// Its e-mail address: login codes go there.
        #[arg(long)]
        email: String,
        /// owner, admin, editor, viewer or operator.
        #[arg(long)]
        role: String,
        /// A TOML file whose keys override the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The data folder (overrides `data_dir`).
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

pub fn run(command: UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Add {
            account,
            email,
            role,
            config,
            data,
        } => add(account, &email, &role, config.as_deref(), data),
    }
}

fn add(
    account: Option<u64>,
    email: &str,
    role: &str,
    config_path: Option<&Path>,
    data: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(config_path)?;
    if let Some(data) = data {
        config.data_dir = data;
    }
    let role = Role::from_name(role).ok_or_else(|| {
        anyhow::anyhow!("unknown role {role:?}: owner, admin, editor, viewer or operator")
    })?;
    match (role, account) {
        (Role::Operator, Some(_)) => {
            anyhow::bail!("an operator belongs to no account: leave out --account")
        }
        (Role::Operator, None) => {}
        (_, None) => anyhow::bail!(
            "--account is needed for a {} (operators alone have none)",
            role.as_str()
        ),
        (_, Some(_)) => {}
    }
    if !email.contains('@') || email.len() > 254 || email.chars().any(char::is_whitespace) {
        anyhow::bail!("{email:?} is not an e-mail address");
    }
    let store = Store::open_configured(&config).map_err(|error| {
        anyhow::anyhow!(
            "cannot open the store in {} ({error}); if the server is running, stop it first or \
             invite the user from the dashboard's Users page",
            config.data_dir.display()
        )
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let link = runtime.block_on(async {
        if let Some(account) = account
            && store.account(account)?.is_none()
        {
            anyhow::bail!("there is no account {account}");
        }
        let user = store
            .create_user(NewUser {
                account_id: account,
                email: email.to_string(),
                role,
                password_hash: None,
            })
            .await?;
        let token =
            sluice::dashboard::new_password_link_token(&store, &user, &config.dashboard).await?;
        let base = config.dashboard.public_url(config.dashboard.listen);
        anyhow::Ok((user, format!("{base}/reset/{token}")))
    })?;
    let (user, link) = link;
    println!(
        "User {} ({}) made. It chooses its password here (once, within {} hours):\n\n  {link}\n",
        user.email,
        user.role.as_str(),
        config.dashboard.reset_valid_secs.div_ceil(3600)
    );
    Ok(ExitCode::SUCCESS)
}
