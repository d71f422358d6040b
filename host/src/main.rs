//! The `sluice` command: the server, and tools for plugin authors and operators.

mod commands;

/// mimalloc instead of glibc's malloc: with glibc, each thread that allocates gets an arena
/// of up to 64 MiB that keeps its freed memory, so the server's resident memory was several
/// times what it had allocated (benches/memory.rs, BENCHMARKS.md); mimalloc gives freed pages
/// back to the OS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sluice: transactional mail with sandboxed WebAssembly Flowsteps.
#[derive(Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server with the embedded default configuration, or the file given.
    Serve {
        /// A TOML file whose keys override the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The data folder (overrides `data_dir`).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Checks and tries out Flowstep plugins.
    #[command(subcommand)]
    Plugin(commands::plugin::PluginCommand),
    /// Reads returned mail: bounces, complaints, auto-replies.
    #[command(subcommand)]
    Bounce(commands::bounce::BounceCommand),
    /// Manages the dashboard's users.
    #[command(subcommand)]
    User(commands::user::UserCommand),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config, data } => commands::serve::run(config.as_deref(), data),
        Command::Plugin(command) => commands::plugin::run(command),
        Command::Bounce(command) => commands::bounce::run(command),
        Command::User(command) => commands::user::run(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sluice: {error:#}");
            ExitCode::from(2)
        }
    }
}
