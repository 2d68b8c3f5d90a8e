//! The cluster's network: one network namespace per server on a bridge the harness
//! creates (root only), and the iptables rules inside those namespaces that partition it.
//!
//! ```text
//! root namespace: bridge rmqj<tag>-b 10.213.<x>.1/24  <- the harness (clients) lives here
//!   |- veth rmqj<tag>-h<k> <-> rmqj<tag>-p<k> in namespace rmqj<tag>-<host>
//!                               (.11 n0, .12 n1, .13 n2, .10 ns0, .20 ns1)
//! ```
//! Faults are iptables rules in a server's own namespace (INPUT/OUTPUT chains), so the
//! harness keeps reaching every server while servers lose each other. The tag encodes the
//! owner's pid: a later run deletes what a dead run left behind, processes included.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{anyhow, bail, Context};

/// Every name this harness creates starts with it (namespaces, bridge, veths).
pub const PREFIX: &str = "rmqj";
/// Environment variable that forces the loopback mode even as root.
pub const NO_NETNS_ENV: &str = "JEPSEN_NO_NETNS";
/// The first two octets of every subnet the harness uses; the third comes from the tag.
const SUBNET_PREFIX: [u8; 2] = [10, 213];
/// Held (flock) while leftovers are removed and a subnet is chosen, so that concurrent
/// harnesses never pick the same subnet.
const LOCK_FILE: &str = "/tmp/rmqj-net.lock";

/// Why the namespaces cannot be used, or `None` when they can (root, and
/// `JEPSEN_NO_NETNS` unset or `0`).
pub fn netns_unavailable() -> Option<&'static str> {
    let forced = std::env::var(NO_NETNS_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
    if forced {
        Some("JEPSEN_NO_NETNS is set")
    } else if !rustix::process::geteuid().is_root() {
        Some("not root")
    } else {
        None
    }
}

/// The absolute path of the tool `name` (`ip`, `iptables`): from `PATH`, else the sbin
/// directories (a non-login root shell may lack them in `PATH`).
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Runs `cmd` and returns its stdout; an error names the whole command line and carries
/// its stderr.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let line = command_line(cmd);
    let out = cmd
        .output()
        .with_context(|| format!("cannot run `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn command_line(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

fn ip() -> Command {
    Command::new(tool("ip"))
}

/// One server's place on the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Harness name of the server: `n0`..`n2`, `ns0`, `ns1`.
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its address on the bridge.
    pub ip: Ipv4Addr,
    /// The veth end on the bridge (root namespace).
    veth: String,
}

/// The namespaces, veths and bridge of one cluster; removed by [`Net::cleanup`] (also on
/// drop).
#[derive(Debug)]
pub struct Net {
    tag: String,
    bridge: String,
    bridge_ip: Ipv4Addr,
    hosts: Vec<Host>,
    cleaned: bool,
}

/// Last octet of a server's address: n<i> = 11 + i, ns<j> = 10 + 10 j.
pub fn host_octet(name: &str) -> anyhow::Result<u8> {
    let parse = |s: &str| s.parse::<u8>().ok().filter(|n| *n < 10);
    if let Some(j) = name.strip_prefix("ns").and_then(parse) {
        Ok(10 + 10 * j)
    } else if let Some(i) = name.strip_prefix('n').and_then(parse) {
        Ok(11 + i)
    } else {
        bail!("no address for server name {name:?} (n0..n9, ns0..ns9)")
    }
}

/// A tag unique among this process's clusters, encoding the pid: base-36 pid then two
/// base-36 digits of a counter (at most 7 characters, so `rmqj<tag>-h4` fits the
/// 15-character limit of interface names).
fn new_tag() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) % (36 * 36);
    format!("{}{}", base36(std::process::id()), base36_width(n, 2))
}

fn base36(mut n: u32) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(std::char::from_digit(n % 36, 36).unwrap_or('0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

fn base36_width(n: u32, width: usize) -> String {
    format!("{:0>width$}", base36(n))
}

/// The pid encoded in a name made by this module (`rmqj<tag>...`), if it is one.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (tag, _) = rest.split_once('-')?;
    if tag.len() < 3
        || !tag
            .bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
    {
        return None;
    }
    u32::from_str_radix(&tag[..tag.len() - 2], 36).ok()
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Holds [`LOCK_FILE`] locked while alive.
struct SetupLock {
    _file: std::fs::File,
}

impl SetupLock {
    fn take() -> anyhow::Result<SetupLock> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_FILE)
            .with_context(|| format!("cannot open {LOCK_FILE}"))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("cannot lock {LOCK_FILE}"))?;
        Ok(SetupLock { _file: file })
    }
}

/// Removes namespaces (killing the processes still in them), bridges and veths left by
/// runs whose owner process is gone. Returns what was removed.
pub fn remove_leftovers() -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    let list = run(ip().args(["netns", "list"]))?;
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        match owner_pid(name) {
            Some(pid) if !pid_alive(pid) => {}
            _ => continue,
        }
        kill_netns_pids(name);
        if run(ip().args(["netns", "del", name])).is_ok() {
            removed.push(name.to_owned());
        }
    }
    let links = run(ip().args(["-o", "link", "show"]))?;
    for line in links.lines() {
        // `7: rmqjab12-b: <...` or `8: rmqjab12-h0@if2: <...`
        let Some(name) = line.split(':').nth(1).map(str::trim) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        match owner_pid(name) {
            Some(pid) if !pid_alive(pid) => {}
            _ => continue,
        }
        if run(ip().args(["link", "del", name])).is_ok() {
            removed.push(name.to_owned());
        }
    }
    Ok(removed)
}

/// SIGKILLs every process in namespace `netns` (servers of a run that died) and waits a
/// moment for them to go, so that the namespace can really be freed.
fn kill_netns_pids(netns: &str) {
    let Ok(pids) = run(ip().args(["netns", "pids", netns])) else {
        return;
    };
    let pids: Vec<i32> = pids.lines().filter_map(|l| l.trim().parse().ok()).collect();
    for pid in &pids {
        if let Some(p) = rustix::process::Pid::from_raw(*pid) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while pids.iter().any(|p| pid_alive(*p as u32)) && std::time::Instant::now() < deadline {
        // Orphans of a dead harness are reaped by init; only their exit is awaited here.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The third octet for a new subnet: from the tag, skipping any already on an interface.
fn free_subnet(tag: &str) -> anyhow::Result<u8> {
    let addrs = run(ip().args(["-4", "-o", "addr", "show"]))?;
    let start = tag
        .bytes()
        .fold(17u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    for k in 0..254u32 {
        let x = ((start + k) % 254 + 1) as u8;
        let prefix = format!(" {}.{}.{x}.", SUBNET_PREFIX[0], SUBNET_PREFIX[1]);
        if !addrs.contains(&prefix) {
            return Ok(x);
        }
    }
    bail!(
        "every {}.{}.x.0/24 subnet is in use",
        SUBNET_PREFIX[0],
        SUBNET_PREFIX[1]
    )
}

impl Net {
    /// Creates the bridge and one namespace per server in `names` (`n0`, `ns0`, ...),
    /// after removing leftovers of dead runs. On failure, whatever was created is removed.
    pub fn create(names: &[&str]) -> anyhow::Result<Net> {
        let _lock = SetupLock::take()?;
        match remove_leftovers() {
            Ok(removed) if !removed.is_empty() => {
                eprintln!(
                    "jepsen: removed leftovers of dead runs: {}",
                    removed.join(" ")
                );
            }
            Ok(_) => {}
            Err(e) => eprintln!("jepsen: cannot look for leftovers of dead runs: {e:#}"),
        }
        let tag = new_tag();
        let x = free_subnet(&tag)?;
        let [a, b] = SUBNET_PREFIX;
        let mut net = Net {
            bridge: format!("{PREFIX}{tag}-b"),
            bridge_ip: Ipv4Addr::new(a, b, x, 1),
            hosts: Vec::new(),
            tag,
            cleaned: false,
        };
        net.build(names, x)?;
        Ok(net)
    }

    fn build(&mut self, names: &[&str], x: u8) -> anyhow::Result<()> {
        let [a, b] = SUBNET_PREFIX;
        let br = self.bridge.clone();
        run(ip().args(["link", "add", &br, "type", "bridge"]))?;
        run(ip().args(["addr", "add", &format!("{}/24", self.bridge_ip), "dev", &br]))?;
        run(ip().args(["link", "set", &br, "up"]))?;
        for (k, name) in names.iter().enumerate() {
            let host = Host {
                name: (*name).to_owned(),
                netns: format!("{PREFIX}{}-{name}", self.tag),
                ip: Ipv4Addr::new(a, b, x, host_octet(name)?),
                veth: format!("{PREFIX}{}-h{k}", self.tag),
            };
            let peer = format!("{PREFIX}{}-p{k}", self.tag);
            let ns = host.netns.clone();
            run(ip().args(["netns", "add", &ns]))?;
            self.hosts.push(host.clone());
            run(ip().args([
                "link", "add", &host.veth, "type", "veth", "peer", "name", &peer, "netns", &ns,
            ]))?;
            run(ip().args(["link", "set", &host.veth, "master", &br, "up"]))?;
            run(ip().args([
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", host.ip),
                "dev",
                &peer,
            ]))?;
            run(ip().args(["-n", &ns, "link", "set", &peer, "up"]))?;
            run(ip().args(["-n", &ns, "link", "set", "lo", "up"]))?;
        }
        Ok(())
    }

    /// The run tag in every name.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The bridge's name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The bridge's address in the root namespace (where the harness's clients are).
    pub fn bridge_ip(&self) -> Ipv4Addr {
        self.bridge_ip
    }

    /// Every server's place.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The server named `name`.
    pub fn host(&self, name: &str) -> anyhow::Result<&Host> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| anyhow!("no server {name} in this network"))
    }

    /// `ip netns exec <netns>`: what a server's command line starts with.
    pub fn exec_prefix(&self, name: &str) -> anyhow::Result<(PathBuf, Vec<String>)> {
        let h = self.host(name)?;
        Ok((
            tool("ip"),
            vec!["netns".into(), "exec".into(), h.netns.clone()],
        ))
    }

    /// Runs iptables with `args` inside `name`'s namespace (waiting for the xtables lock).
    fn iptables(&self, name: &str, args: &[&str]) -> anyhow::Result<()> {
        let h = self.host(name)?;
        let mut cmd = ip();
        cmd.args(["netns", "exec", &h.netns])
            .arg(tool("iptables"))
            .arg("-w")
            .args(args);
        run(&mut cmd).map(|_| ())
    }

    /// Drops everything between `a` and `b`, both directions (rules on both sides).
    pub fn block(&self, a: &str, b: &str) -> anyhow::Result<()> {
        self.block_one_way(a, b)?;
        self.block_one_way(b, a)
    }

    /// Drops packets from `from` to `to` only (on `from`'s OUTPUT and `to`'s INPUT).
    pub fn block_one_way(&self, from: &str, to: &str) -> anyhow::Result<()> {
        let (f, t) = (
            self.host(from)?.ip.to_string(),
            self.host(to)?.ip.to_string(),
        );
        self.iptables(from, &["-A", "OUTPUT", "-d", &t, "-j", "DROP"])?;
        self.iptables(to, &["-A", "INPUT", "-s", &f, "-j", "DROP"])
    }

    /// Drops each packet arriving at `node` from any of `from` with `probability`
    /// (iptables `-m statistic --mode random`).
    pub fn loss(&self, node: &str, from: &[&str], probability: f64) -> anyhow::Result<()> {
        if !(0.0..=1.0).contains(&probability) {
            bail!("loss probability {probability} is not within 0..=1");
        }
        let p = format!("{probability:.4}");
        for src in from {
            let s = self.host(src)?.ip.to_string();
            self.iptables(
                node,
                &[
                    "-A",
                    "INPUT",
                    "-s",
                    &s,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "DROP",
                ],
            )?;
        }
        Ok(())
    }

    /// Removes every rule in `node`'s namespace (INPUT and OUTPUT flushed).
    pub fn heal(&self, node: &str) -> anyhow::Result<()> {
        self.iptables(node, &["-F", "INPUT"])?;
        self.iptables(node, &["-F", "OUTPUT"])
    }

    /// [`Net::heal`] of every namespace; the first error after trying them all.
    pub fn heal_all(&self) -> anyhow::Result<()> {
        let mut first = None;
        for h in &self.hosts {
            if let Err(e) = self.heal(&h.name) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The rules in `node`'s namespace (`iptables -S`), for messages and tests.
    pub fn rules(&self, node: &str) -> anyhow::Result<String> {
        let h = self.host(node)?;
        let mut cmd = ip();
        cmd.args(["netns", "exec", &h.netns])
            .arg(tool("iptables"))
            .args(["-w", "-S"]);
        run(&mut cmd)
    }

    /// Deletes the namespaces (their veths and rules go with them; processes still in
    /// them are SIGKILLed first) and the bridge. Safe to call twice; errors are reported
    /// on stderr and the rest is still removed.
    pub fn cleanup(&mut self) {
        if self.cleaned {
            return;
        }
        self.cleaned = true;
        let mut errors = Vec::new();
        for h in &self.hosts {
            kill_netns_pids(&h.netns);
            if let Err(e) = run(ip().args(["netns", "del", &h.netns])) {
                errors.push(format!("{e:#}"));
            }
            // Normally gone with its peer; left only if the namespace could not go.
            let _ = run(ip().args(["link", "del", &h.veth]));
        }
        if let Err(e) = run(ip().args(["link", "del", &self.bridge])) {
            errors.push(format!("{e:#}"));
        }
        if !errors.is_empty() {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "jepsen: network cleanup: {}", errors.join("; "));
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tags_encode_the_pid_and_fit_interface_names() {
        let tag = new_tag();
        assert!(tag.len() <= 7, "{tag}");
        for name in [
            format!("{PREFIX}{tag}-b"),
            format!("{PREFIX}{tag}-h4"),
            format!("{PREFIX}{tag}-p4"),
            format!("{PREFIX}{tag}-ns1"),
        ] {
            assert_eq!(owner_pid(&name), Some(std::process::id()), "{name}");
        }
        assert!(format!("{PREFIX}{tag}-h4").len() <= 15);
        assert_eq!(owner_pid("rmqjab12-b"), u32::from_str_radix("ab", 36).ok());
        assert_eq!(owner_pid("rmqjAB12-b"), None);
        assert_eq!(owner_pid("eth0"), None);
        assert_eq!(owner_pid("rmqj"), None);
    }

    #[test]
    fn host_addresses() {
        assert_eq!(host_octet("n0").unwrap(), 11);
        assert_eq!(host_octet("n2").unwrap(), 13);
        assert_eq!(host_octet("ns0").unwrap(), 10);
        assert_eq!(host_octet("ns1").unwrap(), 20);
        assert!(host_octet("x1").is_err());
    }

    #[test]
    fn failed_commands_are_named_with_their_stderr() {
        let e = run(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("`sh -c echo oops >&2; exit 3`"), "{e}");
        assert!(e.contains("oops"), "{e}");
    }
}
