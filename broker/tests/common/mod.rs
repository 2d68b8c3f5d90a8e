//! A raw remoting client (copied from the NameServer tests) and an in-process group.
#![allow(clippy::unwrap_used, dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use raftmq_broker::broker::Broker;
use raftmq_broker::remoting_client::RemotingClient;
use raftmq_broker::BrokerConfig;
use raftmq_protocol::{decode_frame, encode_frame, Decoded, RemotingCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
    next_opaque: i32,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        RawClient {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            next_opaque: 1,
        }
    }

    pub async fn send(&mut self, mut cmd: RemotingCommand) -> i32 {
        cmd.opaque = self.next_opaque;
        self.next_opaque += 1;
        self.stream
            .write_all(&encode_frame(&cmd).unwrap())
            .await
            .unwrap();
        cmd.opaque
    }

    /// Next frame, or `None` when the server closed the connection.
    pub async fn recv(&mut self) -> Option<RemotingCommand> {
        loop {
            if let Decoded::Frame { command, consumed } = decode_frame(&self.buf).unwrap() {
                self.buf.advance(consumed);
                return Some(command);
            }
            let read =
                tokio::time::timeout(Duration::from_secs(20), self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("no answer within 20 s");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    pub async fn call(&mut self, cmd: RemotingCommand) -> RemotingCommand {
        let opaque = self.send(cmd).await;
        let resp = self.recv().await.expect("connection closed");
        assert_eq!(resp.opaque, opaque);
        assert!(resp.is_response());
        resp
    }
}

/// Polls `f` until it returns true or `deadline` passes.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A NameServer and a 3-node broker group, in process.
pub struct Group {
    pub namesrv: SocketAddr,
    pub nodes: Vec<Arc<Broker>>,
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Group {
    pub async fn start(group: &str) -> Group {
        Self::start_with(group, "").await
    }

    /// [`Group::start`] with `extra` broker.conf lines for every node.
    pub async fn start_with(group: &str, extra: &str) -> Group {
        let ns_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let namesrv = ns_listener.local_addr().unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        tokio::spawn(raftmq_namesrv::serve(
            ns_listener,
            raftmq_namesrv::NamesrvConfig::default(),
            stopped(stop_rx.clone()),
        ));
        let dir = tempfile::tempdir().unwrap();
        let mut raft = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..3 {
            raft.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
            clients.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let peers: Vec<String> = raft
            .iter()
            .enumerate()
            .map(|(i, l)| format!("n{i}-{}", l.local_addr().unwrap()))
            .collect();
        let mut nodes = Vec::new();
        for (i, (raft_l, client_l)) in raft.into_iter().zip(clients).enumerate() {
            let text = format!(
                "brokerClusterName=DefaultCluster\nbrokerName={group}\n\
                 listenPort={}\nnamesrvAddr={namesrv}\nbrokerIP1=127.0.0.1\n\
                 storePathRootDir={}\nenableDLegerCommitLog=true\ndLegerGroup={group}\n\
                 dLegerPeers={}\ndLegerSelfId=n{i}\nflushDiskType=ASYNC_FLUSH\n\
                 registerNameServerPeriod=10000\n{extra}",
                client_l.local_addr().unwrap().port(),
                dir.path().join(format!("n{i}")).display(),
                peers.join(";"),
            );
            let (config, unknown) = BrokerConfig::from_properties(&text).unwrap();
            assert!(unknown.is_empty(), "{unknown:?}");
            let broker = Arc::new(Broker::start(config, raft_l).await.unwrap());
            let registrar = broker.registrar(RemotingClient::new(Duration::from_secs(3)));
            tokio::spawn(registrar.run(stopped(stop_rx.clone())));
            tokio::spawn(
                broker
                    .clone()
                    .run_preferred_leader(stopped(stop_rx.clone())),
            );
            tokio::spawn(raftmq_broker::server::serve(
                client_l,
                broker.clone(),
                stopped(stop_rx.clone()),
            ));
            nodes.push(broker);
        }
        Group {
            namesrv,
            nodes,
            stop,
            _dir: dir,
        }
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for n in &self.nodes {
            n.shutdown().await;
        }
    }
}
