//! Entry point of `conclave-operator`: parses the command line, sets up tracing, and runs
//! the controllers or a subcommand.

use clap::Parser;
use conclave_operator::config::{Cli, Command};
use conclave_operator::{check_cmd, release_cmd, start, token_cmd};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, not in container logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // kube's rustls needs a process-wide crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kube_config = kube::Config::infer().await?;
    match cli.command {
        Command::Run(cfg) => start::run(kube_config, cfg).await,
        Command::Release(cfg) => {
            let client = kube::Client::try_from(kube_config)?;
            let freed = release_cmd::run(client, &cfg).await?;
            println!("released {freed} objects from Conclave's finalizers");
            Ok(())
        }
        Command::Check(cfg) => {
            let client = kube::Client::try_from(kube_config)?;
            println!("{}", check_cmd::run(client, &cfg).await?);
            println!("release healthy");
            Ok(())
        }
        Command::Token(cfg) => {
            let client = kube::Client::try_from(kube_config)?;
            println!("{}", token_cmd::run(client, &cfg).await?);
            Ok(())
        }
    }
}
