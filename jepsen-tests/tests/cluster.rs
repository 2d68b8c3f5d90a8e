//! Cluster control and the nemesis against real processes: the release binaries of
//! mqnamesrv and mqbroker next to this test (`cargo test --release -p jepsen-tests`).
//! The namespace test needs root; it is skipped, saying so, otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jepsen_tests::cluster::{Cluster, ClusterSpec, NetMode, NODES};
use jepsen_tests::history::{read_history, EventType, Op};
use jepsen_tests::nemesis::{parse_faults, run_schedule, Schedule};
use jepsen_tests::net;
use jepsen_tests::recorder::Recorder;

/// Generous deadline for anything a loaded 2-core machine has to do.
const DEADLINE: Duration = Duration::from_secs(60);

/// One cluster at a time: two would compete for the 2 cores and cause elections.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The directory holding `mqnamesrv` and `mqbroker`: the target directory of this test.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target directory")
        .to_path_buf()
}

fn spec(dir: &tempfile::TempDir, net: NetMode) -> ClusterSpec {
    let mut s = ClusterSpec::new(bin_dir(), dir.path().join("data"), dir.path().join("logs"));
    s.net = net;
    s
}

fn deadline() -> Instant {
    Instant::now() + DEADLINE
}

/// Polls until a leader other than `old` leads, or panics after [`DEADLINE`].
async fn new_leader(c: &Cluster, old: usize) -> usize {
    let end = deadline();
    loop {
        if let Some(l) = c.leader().await.filter(|l| *l != old) {
            return l;
        }
        assert!(
            Instant::now() < end,
            "no new leader replacing n{old}: {}",
            jepsen_tests::cluster::status_lines(&c.statuses().await)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cmd(args: &[&str]) -> String {
    let out = std::process::Command::new(net::tool("ip"))
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Nothing of the cluster is left: no namespace or link with its tag, no process.
fn assert_gone(tag: Option<&str>, pids: &[u32], data: &std::path::Path) {
    if let Some(tag) = tag {
        let marker = format!("{}{tag}-", net::PREFIX);
        let netns = cmd(&["netns", "list"]);
        assert!(!netns.contains(&marker), "namespaces left: {netns}");
        let links = cmd(&["-o", "link", "show"]);
        assert!(!links.contains(&marker), "links left: {links}");
    }
    assert!(!pids.is_empty());
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} still exists"
        );
    }
    assert!(!data.exists(), "{} left", data.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_partition_kill_and_pause_then_heal() {
    if let Some(why) = net::netns_unavailable() {
        eprintln!("SKIPPED: network namespaces unavailable ({why})");
        return;
    }
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let c = Cluster::start(spec(&dir, NetMode::Netns)).unwrap();
    assert!(c.netns());
    let tag = c.net_tag().unwrap();
    assert!(c.node_addr(0).starts_with("10.213."), "{}", c.node_addr(0));
    let l = c.wait_leader(deadline()).await.unwrap();
    c.wait_healthy(deadline()).await.unwrap();
    eprintln!("started, leader n{l} after {:?}", t.elapsed());

    // Partition the leader: the other two elect one of themselves; the old leader still
    // answers the harness (clients reach it) but is no longer the top-term leader.
    let t = Instant::now();
    for o in (0..NODES).filter(|o| *o != l) {
        c.block(&c.node_name(l), &c.node_name(o)).unwrap();
    }
    assert!(c.rules(&c.node_name(l)).unwrap().contains("DROP"));
    let l2 = new_leader(&c, l).await;
    assert!(
        c.statuses().await[l].is_ok(),
        "the harness still reaches n{l}"
    );
    c.heal_all().unwrap();
    assert!(!c.rules(&c.node_name(l)).unwrap().contains("DROP"));
    c.wait_healthy(deadline()).await.unwrap();
    eprintln!(
        "partition-leader n{l} -> n{l2}, healed in {:?}",
        t.elapsed()
    );

    // kill -9 of the leader, restart on the same data.
    let t = Instant::now();
    let l = c.wait_leader(deadline()).await.unwrap();
    let pid = c.kill(l).unwrap();
    assert!(!c.is_running(l));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "reaped"
    );
    new_leader(&c, l).await;
    c.restart(l).unwrap();
    c.wait_healthy(deadline()).await.unwrap();
    eprintln!("kill-leader n{l}, healthy in {:?}", t.elapsed());

    // SIGSTOP of the leader past the election timeout, then SIGCONT.
    let t = Instant::now();
    let l = c.wait_leader(deadline()).await.unwrap();
    c.stop(l).unwrap();
    assert!(c.is_paused(l) && c.is_running(l));
    new_leader(&c, l).await;
    c.cont(l).unwrap();
    c.wait_healthy(deadline()).await.unwrap();
    eprintln!("pause-leader n{l}, healthy in {:?}", t.elapsed());

    // A NameServer kill and restart.
    let ns = c.kill_namesrv(0).unwrap();
    assert!(!std::path::Path::new(&format!("/proc/{ns}")).exists());
    c.heal_all().unwrap();
    c.wait_healthy(deadline()).await.unwrap();

    assert!(
        c.unexpected_exits().is_empty(),
        "{:?}",
        c.unexpected_exits()
    );
    let pids = c.all_pids();
    assert_eq!(
        pids.len(),
        1 + NODES + 2,
        "initial servers, n{l} and ns0 restarted"
    );
    let data = dir.path().join("data");
    c.shutdown();
    assert_gone(Some(&tag), &pids, &data);
    assert!(dir.path().join("logs/n0.log").exists(), "logs stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_schedule_records_every_fault_and_heals() {
    if let Some(why) = net::netns_unavailable() {
        eprintln!("SKIPPED: network namespaces unavailable ({why})");
        return;
    }
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(&dir, NetMode::Netns);
    s.namesrvs = 2;
    let c = Cluster::start(s).unwrap();
    assert_eq!(c.namesrv_addrs().len(), 2);
    let tag = c.net_tag().unwrap();
    c.wait_leader(deadline()).await.unwrap();
    c.wait_healthy(deadline()).await.unwrap();

    let rec = Recorder::create(&dir.path().join("history.jsonl")).unwrap();
    let faults = parse_faults(
        "leader-transfer-storm,\
         kill-follower+partition-one-way+partition-bridge+packet-loss+partition-namesrv+kill-namesrv",
    )
    .unwrap();
    let schedule = Schedule::new(faults, 42, Duration::from_secs(22));
    eprint!("{schedule}");
    assert!(schedule.windows.len() >= 2, "{schedule}");
    let (_tx, stop) = tokio::sync::watch::channel(false);
    let t = Instant::now();
    run_schedule(&c, &schedule, &rec, stop).await.unwrap();
    eprintln!("schedule ran in {:?}", t.elapsed());
    c.wait_healthy(deadline()).await.unwrap();
    for node in ["n0", "n1", "n2", "ns0", "ns1"] {
        assert!(!c.rules(node).unwrap().contains("DROP"), "{node} healed");
    }
    rec.close().unwrap();

    let history = read_history(&dir.path().join("history.jsonl")).unwrap();
    let mut invokes = std::collections::BTreeMap::new();
    for e in &history {
        let Op::Nemesis {
            fault,
            detail,
            targets,
        } = &e.op
        else {
            panic!("only nemesis events: {e:?}");
        };
        eprintln!(
            "{:>6.2} s {:?} {fault} {targets:?} {detail}",
            e.t_ns as f64 / 1e9,
            e.kind
        );
        match e.kind {
            EventType::Invoke => {
                invokes.insert(e.op_id, fault.clone());
            }
            EventType::Ok => {
                assert_eq!(invokes.remove(&e.op_id).as_ref(), Some(fault), "{e:?}");
            }
            _ => panic!("a fault failed: {fault}: {detail}"),
        }
    }
    assert!(invokes.is_empty(), "unhealed: {invokes:?}");
    let started: usize = schedule.windows.iter().map(|w| w.faults.len()).sum();
    assert_eq!(history.len(), 2 * started);
    // Faults are healed when their window ends (give or take a restart).
    for e in history.iter().filter(|e| e.kind == EventType::Ok) {
        let t = Duration::from_nanos(e.t_ns);
        assert!(
            schedule
                .windows
                .iter()
                .any(|w| t >= w.end && t <= w.end + Duration::from_secs(2)),
            "healed at {t:?}, not at a window's end: {schedule}"
        );
    }
    // The storm moved the leadership at least once.
    let storm = history
        .iter()
        .find_map(|e| match &e.op {
            Op::Nemesis { fault, detail, .. }
                if fault == "leader-transfer-storm" && e.kind == EventType::Ok =>
            {
                Some(detail.clone())
            }
            _ => None,
        })
        .unwrap();
    let nums: Vec<u32> = storm
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(nums.len() >= 2 && nums[0] > nums[1], "{storm}");
    assert!(
        c.unexpected_exits().is_empty(),
        "{:?}",
        c.unexpected_exits()
    );

    let pids = c.all_pids();
    let data = dir.path().join("data");
    drop(c); // cleanup on drop
    assert_gone(Some(&tag), &pids, &data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_kill_leader_and_skipped_partition() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(spec(&dir, NetMode::Loopback)).unwrap();
    assert!(!c.netns());
    assert!(
        c.node_addr(1).starts_with("127.0.0.12:"),
        "{}",
        c.node_addr(1)
    );
    assert!(c.namesrv_addrs()[0].starts_with("127.0.0.10:"));
    let l = c.wait_leader(deadline()).await.unwrap();
    c.wait_healthy(deadline()).await.unwrap();

    let rec = Recorder::create(&dir.path().join("history.jsonl")).unwrap();
    let schedule = Schedule::new(
        parse_faults("kill-leader+partition-leader").unwrap(),
        1,
        Duration::from_secs(4),
    );
    assert_eq!(schedule.windows.len(), 1, "{schedule}");
    let (_tx, stop) = tokio::sync::watch::channel(false);
    run_schedule(&c, &schedule, &rec, stop).await.unwrap();
    c.wait_healthy(deadline()).await.unwrap();
    rec.close().unwrap();
    let history = read_history(&dir.path().join("history.jsonl")).unwrap();
    let kill = history
        .iter()
        .find_map(|e| match &e.op {
            Op::Nemesis { fault, targets, .. }
                if fault == "kill-leader" && e.kind == EventType::Invoke =>
            {
                Some(targets.clone())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(kill, vec![format!("n{l}")], "the leader was killed");
    let skipped = history.iter().any(|e| {
        matches!(&e.op, Op::Nemesis { fault, detail, .. }
            if fault == "partition-leader" && detail.starts_with("skipped: not root / no netns"))
    });
    assert!(skipped, "{history:?}");
    assert!(c.block("n0", "n1").is_err(), "no partitions on loopback");
    assert_eq!(c.all_pids().len(), 1 + NODES + 1);

    let pids = c.all_pids();
    let data = dir.path().join("data");
    c.shutdown();
    assert_gone(None, &pids, &data);
}

/// Set for the child run of [`signal_cleanup_child`]: its work directory.
const CHILD_ENV: &str = "JEPSEN_SIGNAL_CHILD_DIR";

/// Not a test by itself: [`sigterm_cleans_up_and_exits_143`] runs this test binary again
/// with only this test, which starts a cluster with the signal cleanup installed, prints
/// `ready <net tag or -> <pid>...` and waits for the signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by sigterm_cleans_up_and_exits_143"]
async fn signal_cleanup_child() {
    let Some(work) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else {
        return;
    };
    let c = Cluster::start(ClusterSpec::new(
        bin_dir(),
        work.join("data"),
        work.join("logs"),
    ))
    .unwrap();
    c.install_signal_cleanup().unwrap();
    c.wait_leader(deadline()).await.unwrap();
    let pids: Vec<String> = c.all_pids().iter().map(u32::to_string).collect();
    println!(
        "ready {} {}",
        c.net_tag().unwrap_or_else(|| "-".into()),
        pids.join(" ")
    );
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cleans_up_and_exits_143() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, tag, pids) = spawn_child(dir.path());
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{status}");
    assert_gone(tag.as_deref(), &pids, &dir.path().join("data"));
}

/// Whether `pid` runs (a zombie whose parent died does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit_once(") ").map(|(_, r)| r.chars().next());
            state != Some(Some('Z'))
        })
        .unwrap_or(false)
}

/// Runs [`signal_cleanup_child`] and returns it with the net tag and server pids it says.
fn spawn_child(work: &std::path::Path) -> (std::process::Child, Option<String>, Vec<u32>) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "signal_cleanup_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, work)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let line = out
        .lines()
        .map(Result::unwrap)
        .find(|l| l.starts_with("ready "))
        .expect("the child says ready");
    let mut words = line.split_whitespace().skip(1);
    let tag = words.next().filter(|t| *t != "-").map(str::to_owned);
    let pids: Vec<u32> = words.map(|w| w.parse().unwrap()).collect();
    assert_eq!(pids.len(), 1 + NODES);
    (child, tag, pids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_of_a_sigkilled_harness_are_killed_by_the_next_start() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, tag, pids) = spawn_child(&dir.path().join("first"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(pids.iter().all(|p| alive(*p)), "orphans run on");

    let c = Cluster::start(spec(&dir, NetMode::Auto)).unwrap();
    for pid in &pids {
        let end = deadline();
        while alive(*pid) {
            assert!(Instant::now() < end, "orphan {pid} still runs");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if let Some(tag) = tag {
        let marker = format!("{}{tag}-", net::PREFIX);
        assert!(!cmd(&["netns", "list"]).contains(&marker));
        assert!(!cmd(&["-o", "link", "show"]).contains(&marker));
    }
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_dead_runs_are_removed() {
    if let Some(why) = net::netns_unavailable() {
        eprintln!("SKIPPED: network namespaces unavailable ({why})");
        return;
    }
    let _serial = SERIAL.lock().await;
    // A pid that no longer runs: a child that exited and was reaped.
    let dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait_with_output().unwrap();
    let tag = format!("{}00", to_base36(dead_pid));
    let ns = format!("{}{tag}-n0", net::PREFIX);
    let bridge = format!("{}{tag}-b", net::PREFIX);
    net::run(std::process::Command::new(net::tool("ip")).args(["netns", "add", &ns])).unwrap();
    net::run(
        std::process::Command::new(net::tool("ip"))
            .args(["link", "add", &bridge, "type", "bridge"]),
    )
    .unwrap();
    // An orphaned "server" inside it, as a SIGKILLed harness leaves them.
    net::run(std::process::Command::new("sh").args([
        "-c",
        &format!(
            "{} netns exec {ns} sleep 600 >/dev/null 2>&1 &",
            net::tool("ip").display()
        ),
    ]))
    .unwrap();
    let orphan: u32 = cmd(&["netns", "pids", &ns]).trim().parse().unwrap();

    let removed = net::remove_leftovers().unwrap();
    assert!(
        removed.contains(&ns) && removed.contains(&bridge),
        "{removed:?}"
    );
    assert!(!cmd(&["netns", "list"]).contains(&ns));
    assert!(!cmd(&["-o", "link", "show"]).contains(&bridge));
    assert!(!std::path::Path::new(&format!("/proc/{orphan}")).exists());
}

fn to_base36(mut n: u32) -> String {
    let mut d = Vec::new();
    loop {
        d.push(std::char::from_digit(n % 36, 36).unwrap());
        n /= 36;
        if n == 0 {
            break;
        }
    }
    d.iter().rev().collect()
}
