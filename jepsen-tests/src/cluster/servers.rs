//! The server processes: slots that start, kill (SIGKILL, reaped), pause and resume them
//! by pid, notice those that exit by themselves, and the cleanup of everything.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use raftmq_tools::playground::procs::{Proc, PID_FILE};

use super::{lock, Inner};
use crate::net;

/// How long a SIGKILLed process may take to be reaped.
const REAP_WITHIN: Duration = Duration::from_secs(10);

/// One server's process slot.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) name: String,
    pub(super) conf: PathBuf,
    pub(super) proc: Option<Proc>,
    pub(super) paused: bool,
    /// Starts so far (names the log of each restart).
    pub(super) starts: u32,
    /// Exits the harness did not cause, with their log tails.
    pub(super) reported_exit: bool,
}

#[derive(Debug)]
pub(super) struct Procs {
    pub(super) namesrvs: Vec<Slot>,
    pub(super) nodes: Vec<Slot>,
    /// Every pid ever started, for leak checks.
    pub(super) all_pids: Vec<u32>,
    /// Messages about servers that exited without being killed.
    pub(super) unexpected: Vec<String>,
    pub(super) shut_down: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Namesrv,
    Node,
}

impl Slot {
    pub(super) fn new(name: String, conf: PathBuf) -> Slot {
        Slot {
            name,
            conf,
            proc: None,
            paused: false,
            starts: 0,
            reported_exit: false,
        }
    }
}

pub(super) fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

impl Inner {
    pub(super) fn slot<'a>(
        &self,
        p: &'a mut Procs,
        kind: Kind,
        i: usize,
    ) -> anyhow::Result<&'a mut Slot> {
        let list = match kind {
            Kind::Namesrv => &mut p.namesrvs,
            Kind::Node => &mut p.nodes,
        };
        let len = list.len();
        list.get_mut(i)
            .ok_or_else(|| anyhow!("no server {i} of {len} ({kind:?})"))
    }

    pub(super) fn slot_running(&self, kind: Kind, i: usize) -> bool {
        let mut p = lock(&self.procs);
        self.note_exits(&mut p);
        self.slot(&mut p, kind, i).is_ok_and(|s| s.proc.is_some())
    }

    /// Notices servers that exited by themselves: reaps them and keeps a message.
    pub(super) fn note_exits(&self, p: &mut Procs) {
        let mut msgs = Vec::new();
        for s in p.namesrvs.iter_mut().chain(p.nodes.iter_mut()) {
            let Some(proc) = s.proc.as_mut() else {
                continue;
            };
            let status = match proc.exited() {
                Ok(None) => continue,
                Ok(Some(st)) => st.to_string(),
                Err(e) => format!("status unreadable: {e}"),
            };
            if !s.reported_exit {
                msgs.push(proc.died_message(&status));
                s.reported_exit = true;
            }
            s.proc = None;
            s.paused = false;
        }
        for m in msgs {
            eprintln!("jepsen: {m}");
            p.unexpected.push(m);
        }
    }

    pub(super) fn start_slot(&self, kind: Kind, i: usize) -> anyhow::Result<u32> {
        let mut p = lock(&self.procs);
        if p.shut_down {
            bail!("the cluster was shut down");
        }
        self.note_exits(&mut p);
        let log_dir = self.spec.log_dir.clone();
        let (bin, netns) = {
            let bin = match kind {
                Kind::Namesrv => self.bins.namesrv.clone(),
                Kind::Node => self.bins.broker.clone(),
            };
            let s = self.slot(&mut p, kind, i)?;
            let netns = lock(&self.net)
                .as_ref()
                .map(|n| n.host(&s.name).map(|h| h.netns.clone()))
                .transpose()?;
            (bin, netns)
        };
        let s = self.slot(&mut p, kind, i)?;
        if s.proc.is_some() {
            bail!("{} is running", s.name);
        }
        let log = if s.starts == 0 {
            log_dir.join(format!("{}.log", s.name))
        } else {
            log_dir.join(format!("{}.restart{}.log", s.name, s.starts))
        };
        let what = match kind {
            Kind::Namesrv => format!("mqnamesrv {}", s.name),
            Kind::Node => format!("mqbroker {}", s.name),
        };
        let conf = s.conf.clone();
        let proc = match &netns {
            Some(ns) => {
                let ip = net::tool("ip");
                let args: Vec<&Path> = vec![
                    Path::new("netns"),
                    Path::new("exec"),
                    Path::new(ns),
                    &bin,
                    Path::new("-c"),
                    &conf,
                ];
                Proc::spawn(&what, &ip, &args, &log)?
            }
            None => Proc::spawn(&what, &bin, &[Path::new("-c"), &conf], &log)?,
        };
        let pid = proc.pid;
        s.proc = Some(proc);
        s.paused = false;
        s.starts += 1;
        s.reported_exit = false;
        p.all_pids.push(pid);
        self.write_pid_file(&p);
        Ok(pid)
    }

    pub(super) fn write_pid_file(&self, p: &Procs) {
        let text: String = p
            .namesrvs
            .iter()
            .chain(&p.nodes)
            .filter_map(|s| s.proc.as_ref().map(|pr| format!("{} {}\n", s.name, pr.pid)))
            .collect();
        let path = self.spec.data_dir.join(PID_FILE);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("jepsen: cannot write {}: {e}", path.display());
        }
        let registry: String = p
            .namesrvs
            .iter()
            .chain(&p.nodes)
            .filter_map(|s| {
                let pid = s.proc.as_ref()?.pid;
                Some(format!("{pid} {}\n", s.conf.display()))
            })
            .collect();
        let written = std::fs::create_dir_all(REGISTRY_DIR)
            .and_then(|()| std::fs::write(&self.registry, registry));
        if let Err(e) = written {
            eprintln!("jepsen: cannot write {}: {e}", self.registry.display());
        }
    }

    pub(super) fn kill_slot(&self, kind: Kind, i: usize) -> anyhow::Result<u32> {
        let mut p = lock(&self.procs);
        self.note_exits(&mut p);
        let s = self.slot(&mut p, kind, i)?;
        let Some(mut proc) = s.proc.take() else {
            bail!("{} is not running", s.name);
        };
        s.paused = false;
        let pid = proc.pid;
        let result = kill_and_reap(&mut proc);
        self.write_pid_file(&p);
        result.map(|()| pid)
    }

    pub(super) fn signal_slot(
        &self,
        i: usize,
        sig: rustix::process::Signal,
        paused: bool,
    ) -> anyhow::Result<u32> {
        let mut p = lock(&self.procs);
        self.note_exits(&mut p);
        let s = self.slot(&mut p, Kind::Node, i)?;
        let Some(proc) = s.proc.as_ref() else {
            bail!("{} is not running", s.name);
        };
        let pid = proc.pid;
        send(pid, sig).with_context(|| format!("cannot signal {} (pid {pid})", s.name))?;
        s.paused = paused;
        Ok(pid)
    }

    /// Kills and reaps every server, removes the network and the created files.
    pub(super) fn cleanup(&self) {
        let mut p = lock(&self.procs);
        if p.shut_down {
            return;
        }
        p.shut_down = true;
        // Brokers first, then NameServers; SIGKILL each, then reap them all.
        let all = &mut *p;
        let mut procs: Vec<Proc> = all
            .nodes
            .iter_mut()
            .chain(all.namesrvs.iter_mut())
            .filter_map(|s| s.proc.take())
            .collect();
        for proc in &procs {
            let _ = send(proc.pid, rustix::process::Signal::KILL);
        }
        for proc in &mut procs {
            if let Err(e) = reap(proc) {
                eprintln!("jepsen: {e:#}");
            }
        }
        drop(p);
        if let Some(mut net) = lock(&self.net).take() {
            net.cleanup();
        }
        for path in &self.created {
            let r = if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
            if let Err(e) = r {
                if e.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("jepsen: cannot remove {}: {e}", path.display());
                }
            }
        }
        // Only if nothing else is in it.
        let _ = std::fs::remove_dir(&self.spec.data_dir);
        let _ = std::fs::remove_file(&self.registry);
    }
}

/// Where every cluster lists its running servers (`<pid> <config path>` lines), in a file
/// named `<owner pid>-<n>.pids`, so that a later run can kill the servers of a harness
/// that died without cleaning up (SIGKILL), namespaces or not.
pub(super) const REGISTRY_DIR: &str = "/tmp/rmqj-servers";

/// A registry file name unique to this cluster.
pub(super) fn registry_file() -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Path::new(REGISTRY_DIR).join(format!("{}-{n}.pids", std::process::id()))
}

/// SIGKILLs the servers listed by dead owners (a pid counts only while its command line
/// still names the listed config, so a reused pid is left alone) and drops their lists.
/// Returns what was killed.
pub(super) fn kill_orphans() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(REGISTRY_DIR) else {
        return Vec::new();
    };
    let mut killed = Vec::new();
    for entry in dir.flatten() {
        let path = entry.path();
        let owner = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        let Some(owner) = owner else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines() {
            let Some((pid, conf)) = line.split_once(' ') else {
                continue;
            };
            let Ok(pid) = pid.parse::<u32>() else {
                continue;
            };
            let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(conf));
            if ours && send(pid, rustix::process::Signal::KILL).is_ok() {
                killed.push(format!("{pid} ({conf})"));
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    killed
}

fn send(pid: u32, sig: rustix::process::Signal) -> anyhow::Result<()> {
    let raw = i32::try_from(pid).map_err(|_| anyhow!("pid {pid} out of range"))?;
    let pid = rustix::process::Pid::from_raw(raw).ok_or_else(|| anyhow!("pid {raw} invalid"))?;
    rustix::process::kill_process(pid, sig).map_err(|e| anyhow!("kill({raw}, {sig:?}): {e}"))
}

/// SIGKILL, then reap.
fn kill_and_reap(proc: &mut Proc) -> anyhow::Result<()> {
    // ESRCH only if it is already a zombie (exited by itself); reaping still follows.
    let _ = send(proc.pid, rustix::process::Signal::KILL);
    reap(proc)
}

/// Waits (bounded) until `proc` has exited and is reaped.
fn reap(proc: &mut Proc) -> anyhow::Result<()> {
    let deadline = Instant::now() + REAP_WITHIN;
    loop {
        match proc.exited() {
            Ok(Some(_)) => return Ok(()),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(None) => bail!(
                "{} (pid {}) not gone {REAP_WITHIN:?} after SIGKILL",
                proc.name,
                proc.pid
            ),
            Err(e) => bail!("cannot reap {} (pid {}): {e}", proc.name, proc.pid),
        }
    }
}
