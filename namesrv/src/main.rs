//! `mqnamesrv [-c file] [-p]`: start a NameServer (RocketMQ-compatible flags).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use raftmq_namesrv::NamesrvConfig;
use tracing::{info, warn};

/// RaftMQ NameServer: the route registry RocketMQ clients and brokers talk to.
#[derive(Debug, Parser)]
#[command(name = "mqnamesrv", version)]
struct Cli {
    /// Properties file (listenPort, bindAddress, scanNotActiveBrokerInterval, kvConfigPath,
    /// orderMessageEnable, enableTopicList).
    #[arg(short = 'c', long = "configFile")]
    config_file: Option<PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(short = 'p', long = "printConfigItem")]
    print_config: bool,
    /// Accepted for compatibility with RocketMQ's launcher; a NameServer needs no NameServer.
    #[arg(short = 'n', long = "namesrvAddr", hide = true)]
    _namesrv_addr: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let config = match &cli.config_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            let (config, unknown) = NamesrvConfig::from_properties(&text)
                .with_context(|| format!("config file {}", path.display()))?;
            for u in unknown {
                warn!(file = %path.display(), line = u.line, key = %u.key, "unknown config key ignored");
            }
            println!("load config properties file OK, {}", path.display());
            config
        }
        None => NamesrvConfig::default(),
    };
    if cli.print_config {
        print!("{}", config.to_properties());
        return Ok(());
    }

    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        let addr = SocketAddr::new(config.bind_address, config.listen_port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        println!("The Name Server boot success. serializeType=JSON, address {local}");
        info!(%local, "name server listening");
        raftmq_namesrv::serve(listener, config, shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!("SIGINT received"),
        _ = term => info!("SIGTERM received"),
    }
}
