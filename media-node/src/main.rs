//! `media-node`: parses the configuration, sets up logging and runs the node (see the
//! library's `app` module).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = conclave_media_node::config::Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // Colour codes only on a terminal, not in container logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(conclave_media_node::app::run(config))?;
    Ok(())
}
