//! `mqbroker -c <file> [-n addr] [-p]`: start one node of a RaftMQ broker group.
//!
//! Listens for raft peers on its own `dLegerPeers` address and for clients on
//! `brokerIP1:listenPort`, binding `0.0.0.0:listenPort` so that clients reach it on any
//! interface (`brokerIP1` is only what is advertised and stored as STOREHOST).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

/// mimalloc instead of glibc's malloc: the send path allocates and frees many short-lived
/// buffers across threads, and glibc spent about 15 % of a master's CPU on it (chunk
/// consolidation and unlinking, measured with `perf record` under `mqbench -w 256`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use raftmq_broker::broker::Broker;
use raftmq_broker::remoting_client::RemotingClient;
use raftmq_broker::BrokerConfig;
use tokio::sync::watch;
use tracing::{info, warn};

/// RaftMQ broker node: one member of a Raft-replicated RocketMQ broker group.
#[derive(Debug, Parser)]
#[command(name = "mqbroker", version)]
struct Cli {
    /// broker.conf (RocketMQ key names, DLedger keys included).
    #[arg(short = 'c', long = "configFile")]
    config_file: PathBuf,
    /// NameServer list `host:port;host:port`, overriding `namesrvAddr`.
    #[arg(short = 'n', long = "namesrvAddr")]
    namesrv_addr: Option<String>,
    /// Print the effective configuration and exit.
    #[arg(short = 'p', long = "printConfigItem")]
    print_config: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let path = &cli.config_file;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let (mut config, unknown) = BrokerConfig::from_properties(&text)
        .with_context(|| format!("config file {}", path.display()))?;
    for u in unknown {
        warn!(file = %path.display(), line = u.line, key = %u.key, note = %u.note, "config key ignored");
    }
    if let Some(addr) = &cli.namesrv_addr {
        config.override_namesrv(addr).context("-n/--namesrvAddr")?;
    }
    println!("load config properties file OK, {}", path.display());
    if cli.print_config {
        print!("{}", config.to_properties());
        return Ok(());
    }

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.server_worker_threads > 0 {
        builder.worker_threads(usize::from(config.server_worker_threads));
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(run(config))
}

/// How long a port that is in use is retried at start-up.
const BIND_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Binds `addr`, retrying for a while when the port is in use: a port in the kernel's
/// ephemeral range (the samples' raft ports 40911-40913 are) can be held for a moment
/// by an outgoing connection's local end, e.g. right after a crash and restart.
async fn bind_patiently(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let deadline = tokio::time::Instant::now() + BIND_PATIENCE;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                warn!(%addr, "port in use, retrying");
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}

async fn run(config: BrokerConfig) -> anyhow::Result<()> {
    let raft_addr = config.raft_self_addr().to_owned();
    let raft_listener = bind_patiently(&raft_addr)
        .await
        .with_context(|| format!("cannot listen for raft peers on {raft_addr}"))?;
    let client_bind = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), config.listen_port);
    let client_listener = bind_patiently(&client_bind.to_string())
        .await
        .with_context(|| format!("cannot listen for clients on {client_bind}"))?;
    let (name, addr, ns) = (
        config.broker_name.clone(),
        config.client_addr(),
        config.namesrv_addr.join(";"),
    );
    let broker = Arc::new(
        Broker::start(config, raft_listener)
            .await
            .context("cannot start the raft node")?,
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let registrar = broker.registrar(RemotingClient::new(std::time::Duration::from_secs(3)));
    let registrar = tokio::spawn(registrar.run(stopped(stop_rx.clone())));
    let preferred = tokio::spawn(
        broker
            .clone()
            .run_preferred_leader(stopped(stop_rx.clone())),
    );
    let maintenance = tokio::spawn(broker.clone().run_maintenance(stopped(stop_rx.clone())));
    let server = tokio::spawn(raftmq_broker::server::serve(
        client_listener,
        broker.clone(),
        stopped(stop_rx),
    ));
    println!("The broker[{name}, {addr}] boot success. serializeType=JSON and name server is {ns}");
    info!(%addr, "broker listening");

    shutdown_signal().await;
    let _ = stop_tx.send(true);
    let _ = server.await;
    let _ = registrar.await;
    let _ = preferred.await;
    let _ = maintenance.await;
    broker.shutdown().await;
    info!("broker stopped");
    Ok(())
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
