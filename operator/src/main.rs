//! Entry point of `conclave-operator`: parses the command line, sets up tracing, and runs
//! the controllers or a subcommand.

use clap::Parser;
use conclave_operator::config::{Cli, Command};
use conclave_operator::{start, token_cmd};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // kube's rustls needs a process-wide crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = kube::Client::try_default().await?;
    match cli.command {
        Command::Run(cfg) => start::run(client, cfg).await,
        Command::Token(cfg) => {
            println!("{}", token_cmd::run(client, &cfg).await?);
            Ok(())
        }
    }
}
