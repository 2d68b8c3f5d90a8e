//! The playground's child processes: finding the server binaries, starting each with its
//! output in a log file, noticing one that dies, stopping them all (SIGTERM, then SIGKILL
//! after a grace period), and the pid file that names them.
//!
//! Children run in their own process group, so a terminal's Ctrl-C reaches only the
//! playground, which then stops them in order; `kill_on_drop` SIGKILLs any child still
//! running should the playground unwind without stopping them.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// Name of the file in the data directory listing `name pid` per started process.
pub const PID_FILE: &str = "playground.pids";
/// Bytes read from the end of a log to show why a process stopped.
const LOG_TAIL_BYTES: u64 = 4096;
/// Lines of a log shown when its process fails.
const LOG_TAIL_LINES: usize = 8;

/// The server executables the playground starts.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `mqnamesrv`.
    pub namesrv: PathBuf,
    /// `mqbroker`.
    pub broker: PathBuf,
}

impl Binaries {
    /// The binaries in the directory of the running executable (cargo builds them all into
    /// one target directory).
    pub fn next_to_current_exe() -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this executable's path")?;
        let dir = exe
            .parent()
            .with_context(|| format!("{} has no parent directory", exe.display()))?;
        Self::in_dir(dir)
    }

    /// The binaries in `dir`, or an error naming the one missing.
    pub fn in_dir(dir: &Path) -> anyhow::Result<Self> {
        let find = |name: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
            if path.is_file() {
                Ok(path)
            } else {
                bail!(
                    "{name} not found next to mqadmin (looked for {}): build every binary \
                     with `cargo build --release` (or `cargo build`) and run mqadmin from the \
                     same target directory",
                    path.display()
                )
            }
        };
        Ok(Binaries {
            namesrv: find("mqnamesrv")?,
            broker: find("mqbroker")?,
        })
    }
}

/// One started server process.
#[derive(Debug)]
pub struct Proc {
    /// How messages name it: `mqnamesrv`, `mqbroker n0`, ...
    pub name: String,
    /// Its stdout and stderr.
    pub log: PathBuf,
    /// Its pid, kept for messages after it was reaped.
    pub pid: u32,
    child: Child,
}

impl Proc {
    /// Starts `bin args` with stdin closed and stdout and stderr appended to `log`.
    pub fn spawn(name: &str, bin: &Path, args: &[&Path], log: &Path) -> anyhow::Result<Proc> {
        let out = File::create(log)
            .with_context(|| format!("cannot create {name}'s log file {}", log.display()))?;
        let err = out
            .try_clone()
            .with_context(|| format!("cannot share {name}'s log file {}", log.display()))?;
        let child = Command::new(bin)
            .args(args)
            // Plain log files: tracing colours its output unless NO_COLOR is set.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {name} ({}); its log is {}",
                    bin.display(),
                    log.display()
                )
            })?;
        let pid = child.id().unwrap_or(0);
        Ok(Proc {
            name: name.to_owned(),
            log: log.to_owned(),
            pid,
            child,
        })
    }

    /// How it ended, if it has (`Err` if that cannot be known).
    pub fn exited(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// The message for a process that stopped by itself: name, pid, status, log and the
    /// log's last lines.
    pub fn died_message(&self, status: &str) -> String {
        let mut msg = format!(
            "{} (pid {}) exited unexpectedly ({status}); its log is {}",
            self.name,
            self.pid,
            self.log.display()
        );
        let tail = log_tail(&self.log);
        if !tail.is_empty() {
            msg.push_str(", ending with:");
            for line in tail {
                msg.push_str("\n    ");
                msg.push_str(&line);
            }
        }
        msg
    }

    /// Asks it to stop (SIGTERM) unless it already has.
    fn terminate(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self
            .child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        #[cfg(not(unix))]
        let _ = self.child.start_kill();
    }
}

/// The last lines of `log` (at most [`LOG_TAIL_LINES`]), empty if it cannot be read.
pub fn log_tail(log: &Path) -> Vec<String> {
    let read = || -> std::io::Result<String> {
        let mut f = File::open(log)?;
        let len = f.metadata()?.len();
        let start = len.saturating_sub(LOG_TAIL_BYTES);
        f.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        // Reading from the middle of the file: its first line is cut.
        Ok(match text.split_once('\n') {
            Some((_, rest)) if start > 0 => rest.to_owned(),
            _ => text,
        })
    };
    let text = read().unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

/// Stops `procs` together: SIGTERM to each still running, then SIGKILL to any not gone
/// within `grace`. Every process is reaped on return.
pub async fn stop(procs: &mut [Proc], grace: Duration) {
    for p in procs.iter_mut() {
        p.terminate();
    }
    let deadline = tokio::time::Instant::now() + grace;
    for p in procs.iter_mut() {
        if tokio::time::timeout_at(deadline, p.child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "playground: {} (pid {}) did not stop within {grace:?}; killing it",
                p.name, p.pid
            );
            let _ = p.child.kill().await;
        }
    }
}

/// The pid file's text: `name pid` per process, names without blanks.
pub fn pid_file_text(procs: &[Proc]) -> String {
    procs
        .iter()
        .map(|p| format!("{} {}\n", p.name.replace(' ', "-"), p.pid))
        .collect()
}

/// The pids listed in a pid file's text (lines that do not parse are skipped).
pub fn parse_pid_file(text: &str) -> Vec<(String, u32)> {
    text.lines()
        .filter_map(|l| {
            let (name, pid) = l.trim().split_once(' ')?;
            Some((name.to_owned(), pid.trim().parse().ok()?))
        })
        .collect()
}

/// Pids from an earlier playground in `dir` that still run one of its servers (their
/// command line names a config file in `dir`): a second playground must not share the
/// data. Only Linux can tell (`/proc`); elsewhere none are found.
pub fn still_running(dir: &Path) -> Vec<(String, u32)> {
    let Ok(text) = std::fs::read_to_string(dir.join(PID_FILE)) else {
        return Vec::new();
    };
    let marker = format!("{}/", dir.display());
    parse_pid_file(&text)
        .into_iter()
        .filter(|(_, pid)| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&marker))
                .unwrap_or(false)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_round_trips_and_skips_junk() {
        let text = "mqnamesrv 10\nmqbroker-n0 11\n\ngarbage\nmqbroker-n1 x\nmqbroker-n2 13\n";
        assert_eq!(
            parse_pid_file(text),
            vec![
                ("mqnamesrv".to_owned(), 10),
                ("mqbroker-n0".to_owned(), 11),
                ("mqbroker-n2".to_owned(), 13)
            ]
        );
    }

    #[test]
    fn missing_binaries_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = Binaries::in_dir(dir.path()).unwrap_err().to_string();
        assert!(e.starts_with("mqnamesrv not found next to mqadmin"), "{e}");
        std::fs::write(dir.path().join("mqnamesrv"), "").unwrap();
        let e = Binaries::in_dir(dir.path()).unwrap_err().to_string();
        assert!(e.starts_with("mqbroker not found"), "{e}");
        std::fs::write(dir.path().join("mqbroker"), "").unwrap();
        let b = Binaries::in_dir(dir.path()).unwrap();
        assert_eq!(b.broker, dir.path().join("mqbroker"));
    }

    #[test]
    fn log_tail_keeps_the_last_non_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        let text: String = (0..20).map(|i| format!("line {i}\n\n")).collect();
        std::fs::write(&log, text).unwrap();
        let tail = log_tail(&log);
        assert_eq!(tail.len(), LOG_TAIL_LINES);
        assert_eq!(tail[0], "line 12");
        assert_eq!(tail[7], "line 19");
        assert!(log_tail(&dir.path().join("none.log")).is_empty());
    }
}
