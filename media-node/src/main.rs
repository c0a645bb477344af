//! `media-node`: parses the configuration and runs the node (see the library's `app`).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = conclave_media_node::config::Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(conclave_media_node::app::run(config))?;
    Ok(())
}
