//! The real `mqadmin playground` with the real `mqnamesrv` and `mqbroker`: it prints
//! `NAMESRV_ADDR=...` once the group has a master, serves a send and a pull, shows each
//! node's status, and leaves no server running after SIGTERM, after a child dies, or when
//! a server fails to start.
//!
//! mqnamesrv and mqbroker must sit next to mqadmin in the same target directory:
//! `cargo test --workspace` builds them there (the namesrv and broker packages have
//! integration tests of their binaries); `cargo test -p raftmq-tools` alone needs a
//! `cargo build` first.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use raftmq_client::remoting::Connection;
use raftmq_protocol::body::{decode_json, ClusterInfo, TopicRouteData};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{
    GetRouteInfoRequestHeader, PullMessageRequestHeader, SendMessageRequestHeaderV2,
    SendMessageResponseHeader,
};
use raftmq_protocol::message::MessageRecord;
use raftmq_protocol::{RemotingCommand, StrMap};

const MQADMIN: &str = env!("CARGO_BIN_EXE_mqadmin");
/// Generous: three nodes start and elect on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(120);
const CALL: Duration = Duration::from_secs(10);
/// Between two polls of a condition awaited under [`DEADLINE`].
const POLL: Duration = Duration::from_millis(200);

/// A running `mqadmin playground`: its output lines arrive on channels; dropping it kills
/// it and the servers it started, so a failing test leaves nothing running.
struct Playground {
    child: Option<Child>,
    dir: PathBuf,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
    pids: Vec<(String, u32)>,
}

fn lines_of(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn server_bins_present() {
    let dir = Path::new(MQADMIN).parent().unwrap();
    for bin in ["mqnamesrv", "mqbroker"] {
        assert!(
            dir.join(bin).is_file(),
            "{bin} is not next to mqadmin in {}: run `cargo test --workspace` (which builds \
             every binary into the same target directory) or `cargo build` first",
            dir.display()
        );
    }
}

impl Playground {
    fn start(exe: &Path, dir: &Path) -> Playground {
        // As the playground names it in its children's command lines.
        let dir = dir.canonicalize().unwrap();
        let mut child = Command::new(exe)
            .args(["playground", "--data-dir"])
            .arg(&dir)
            .args(["--namesrv-port", "0", "--broker-ports", "0,0,0"])
            .args(["--raft-ports", "0,0,0", "--status-interval", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        Playground {
            child: Some(child),
            dir,
            stdout,
            stderr,
            stderr_seen: Vec::new(),
            pids: Vec::new(),
        }
    }

    /// The next stdout line, or a failure showing stderr.
    fn next_line(&mut self, deadline: Instant) -> String {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.stdout.recv_timeout(left) {
            Ok(line) => line,
            Err(e) => panic!("no stdout line ({e:?}); stderr: {:?}", self.drain_stderr()),
        }
    }

    fn drain_stderr(&mut self) -> Vec<String> {
        self.stderr_seen.extend(self.stderr.try_iter());
        self.stderr_seen.clone()
    }

    /// Waits for `NAMESRV_ADDR=...` and returns the address; reads the pid file.
    fn namesrv_addr(&mut self) -> String {
        let deadline = Instant::now() + DEADLINE;
        let first = self.next_line(deadline);
        let addr = first
            .strip_prefix("NAMESRV_ADDR=127.0.0.1:")
            .unwrap_or_else(|| panic!("the first stdout line is {first:?}"));
        let port: u16 = addr.parse().unwrap();
        assert_ne!(port, 0);
        let text = std::fs::read_to_string(self.dir.join("playground.pids")).unwrap();
        self.pids = raftmq_tools::playground::parse_pid_file(&text);
        let names: Vec<&str> = self.pids.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["mqnamesrv", "mqbroker-n0", "mqbroker-n1", "mqbroker-n2"]
        );
        for (name, pid) in &self.pids {
            assert!(self.runs(*pid), "{name} (pid {pid}) is not running");
        }
        format!("127.0.0.1:{port}")
    }

    /// True while `pid` is a live process started for this playground (its command line
    /// names a config file in the data directory; a zombie's is empty).
    fn runs(&self, pid: u32) -> bool {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(&format!("{}/", self.dir.display())))
            .unwrap_or(false)
    }

    fn signal(&self, pid: u32, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    /// Waits for the playground to exit; returns its status and all of its stderr.
    fn wait_exit(&mut self) -> (ExitStatus, Vec<String>) {
        let mut child = self.child.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send((status, child));
        });
        let (status, child) = match rx.recv_timeout(DEADLINE) {
            Ok(done) => done,
            Err(_) => panic!(
                "the playground did not exit; stderr: {:?}",
                self.drain_stderr()
            ),
        };
        drop(child);
        // The stderr reader ends at EOF, once the playground has exited.
        let deadline = Instant::now() + DEADLINE;
        while let Ok(line) = self
            .stderr
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.stderr_seen.push(line);
        }
        (status.unwrap(), self.stderr_seen.clone())
    }

    fn assert_no_server_left(&self) {
        for (name, pid) in &self.pids {
            assert!(
                !self.runs(*pid),
                "{name} (pid {pid}) outlived the playground"
            );
        }
        assert!(
            !self.dir.join("playground.pids").exists(),
            "the pid file is removed on exit"
        );
    }
}

impl Drop for Playground {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for (_, pid) in &self.pids {
            if self.runs(*pid) {
                self.signal(*pid, rustix::process::Signal::KILL);
            }
        }
    }
}

async fn call(addr: &str, req: RemotingCommand) -> RemotingCommand {
    let conn = Connection::connect(addr, CALL, None).await.unwrap();
    conn.call(req, CALL).await.unwrap()
}

async fn master_of(namesrv: &str) -> String {
    let req = RemotingCommand::request(RequestCode::GetBrokerClusterInfo.code(), StrMap::new());
    let resp = call(namesrv, req).await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    let info: ClusterInfo = decode_json("ClusterInfo", &resp.body).unwrap();
    let group = &info.broker_addr_table["RaftNode00"];
    group
        .master_addr()
        .expect("NAMESRV_ADDR is printed once the group has a master")
        .to_owned()
}

/// Sends one message to the master (retrying while a new master settles) and pulls it
/// back; returns the master that stored it.
async fn send_and_pull(namesrv: &str, topic: &str, body: &[u8]) -> String {
    let deadline = Instant::now() + DEADLINE;
    let (master, sent) = loop {
        let master = master_of(namesrv).await;
        let header = SendMessageRequestHeaderV2 {
            a: "playground_test_producer".into(),
            b: topic.into(),
            c: "TBW102".into(),
            d: 4,
            e: 0,
            g: 1,
            i: Some("WAIT\u{1}true\u{2}".into()),
            ..Default::default()
        };
        let req = RemotingCommand::request_with(RequestCode::SendMessageV2.code(), &header)
            .with_body(body.to_vec());
        let resp = call(&master, req).await;
        if resp.code == ResponseCode::Success.code() {
            break (master, resp.header::<SendMessageResponseHeader>().unwrap());
        }
        assert!(
            Instant::now() < deadline,
            "send refused: {} {:?}",
            resp.code,
            resp.remark
        );
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(sent.queue_id, 0);
    let pull = PullMessageRequestHeader {
        consumer_group: "playground_test_consumer".into(),
        topic: topic.into(),
        queue_id: 0,
        queue_offset: sent.queue_offset,
        max_msg_nums: 1,
        suspend_timeout_millis: 1_000,
        ..Default::default()
    };
    loop {
        let req = RemotingCommand::request_with(RequestCode::PullMessage.code(), &pull);
        let resp = call(&master, req).await;
        if resp.code == ResponseCode::Success.code() {
            let records = MessageRecord::decode_all(&resp.body).unwrap();
            assert_eq!(records.len(), 1);
            assert_eq!(&records[0].body[..], body);
            assert_eq!(records[0].topic, topic);
            return master;
        }
        assert!(
            Instant::now() < deadline,
            "pull: {} {:?}",
            resp.code,
            resp.remark
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The route of `topic` once the NameServer has one (a new topic is registered by the
/// master shortly after its first send).
async fn route_of(namesrv: &str, topic: &str) -> TopicRouteData {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let h = GetRouteInfoRequestHeader {
            topic: topic.into(),
            accept_standard_json_only: None,
        };
        let resp = call(
            namesrv,
            RemotingCommand::request_with(RequestCode::GetRouteinfoByTopic.code(), &h),
        )
        .await;
        if resp.code == ResponseCode::Success.code() {
            return decode_json("TopicRouteData", &resp.body).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no route for {topic}: {} {:?}",
            resp.code,
            resp.remark
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playground_serves_a_send_shows_status_and_stops_every_server_on_sigterm() {
    server_bins_present();
    let dir = tempfile::tempdir().unwrap();
    let mut pg = Playground::start(Path::new(MQADMIN), dir.path());
    let namesrv = pg.namesrv_addr();
    for conf in [
        "namesrv.conf",
        "broker-n0.conf",
        "broker-n1.conf",
        "broker-n2.conf",
    ] {
        assert!(dir.path().join(conf).is_file(), "{conf} is written");
    }

    let master = send_and_pull(&namesrv, "PlaygroundTopic", b"hello playground").await;
    let route = route_of(&namesrv, "PlaygroundTopic").await;
    assert_eq!(route.broker_datas.len(), 1);
    assert_eq!(route.broker_datas[0].broker_name, "RaftNode00");
    assert_eq!(route.broker_datas[0].master_addr(), Some(master.as_str()));

    // Status lines: one per node, the master among them as leader.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let line = pg.next_line(deadline);
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(
            fields.len() >= 3 && ["n0", "n1", "n2"].contains(&fields[0]),
            "status line {line:?}"
        );
        if fields[1] == master && fields[2] == "leader" {
            assert!(fields[3].starts_with("term="), "{line}");
            let committed: u64 = fields[4]
                .strip_prefix("committed=")
                .unwrap()
                .parse()
                .unwrap();
            assert!(committed >= 1, "{line}");
            break;
        }
    }

    let pid = pg.child.as_ref().unwrap().id();
    pg.signal(pid, rustix::process::Signal::TERM);
    let (status, stderr) = pg.wait_exit();
    assert!(status.success(), "{status}; stderr: {stderr:?}");
    assert!(
        stderr.iter().any(|l| l.contains("SIGTERM received")),
        "{stderr:?}"
    );
    pg.assert_no_server_left();
    let log = std::fs::read_to_string(dir.path().join("broker-n0.log")).unwrap();
    assert!(
        log.contains("boot success"),
        "the broker's output is in its log"
    );
}

#[test]
fn a_server_that_dies_stops_the_playground_naming_it() {
    server_bins_present();
    let dir = tempfile::tempdir().unwrap();
    let mut pg = Playground::start(Path::new(MQADMIN), dir.path());
    pg.namesrv_addr();
    let (_, victim) = pg.pids[2].clone();
    pg.signal(victim, rustix::process::Signal::KILL);
    let (status, stderr) = pg.wait_exit();
    assert!(!status.success(), "a dead child is a failure");
    let all = stderr.join("\n");
    assert!(
        all.contains(&format!("mqbroker n1 (pid {victim}) exited unexpectedly"))
            && all.contains("broker-n1.log"),
        "{all}"
    );
    pg.assert_no_server_left();
}

/// Writes an executable shell script.
fn script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn missing_or_failing_server_binaries_are_named() {
    let bin_dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let exe = bin_dir.path().join("mqadmin");
    std::fs::copy(MQADMIN, &exe).unwrap();
    let run = || {
        let out = Command::new(&exe)
            .args(["playground", "--data-dir"])
            .arg(data.path())
            .args(["--namesrv-port", "0", "--broker-ports", "0,0,0"])
            .args(["--raft-ports", "0,0,0"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(out.stdout.is_empty(), "no NAMESRV_ADDR line");
        String::from_utf8(out.stderr).unwrap()
    };

    let err = run();
    assert!(err.contains("mqnamesrv not found next to mqadmin"), "{err}");

    // A NameServer that fails at once; brokers that would run forever, recording pids.
    let pids = data.path().join("fake-broker-pids");
    script(
        &bin_dir.path().join("mqnamesrv"),
        "#!/bin/sh\necho 'boom: no NameServer today' >&2\nexit 3\n",
    );
    script(
        &bin_dir.path().join("mqbroker"),
        &format!(
            "#!/bin/sh\necho $$ >> '{}'\nexec sleep 600\n",
            pids.display()
        ),
    );
    let err = run();
    assert!(
        err.contains("mqnamesrv (pid") && err.contains("exited unexpectedly"),
        "{err}"
    );
    assert!(
        err.contains("namesrv.log") && err.contains("boom: no NameServer today"),
        "{err}"
    );
    // Every fake broker that got to start was stopped.
    for pid in std::fs::read_to_string(&pids).unwrap_or_default().lines() {
        let alive = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains("sleep"))
            .unwrap_or(false);
        assert!(!alive, "fake mqbroker {pid} outlived the playground");
    }

    // A server binary that cannot be executed at all.
    {
        use std::os::unix::fs::PermissionsExt;
        let path = bin_dir.path().join("mqnamesrv");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let err = run();
    assert!(err.contains("cannot start mqnamesrv"), "{err}");
    assert!(err.contains("namesrv.log"), "{err}");
}
