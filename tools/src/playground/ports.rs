//! Port choice: the sample configs' ports unless taken, exact ports when asked for, free
//! ones otherwise. A port counts as free when it can be bound on every interface (that
//! fails while anything listens on it, loopback included).

use std::io;
use std::net::{Ipv4Addr, TcpListener};

use super::conf::{Ports, DEFAULT_PORTS, NODES};

/// How one port is to be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRequest {
    /// This port if it is free, else any free one (a default).
    Preferred(u16),
    /// Exactly this port: an error if it is taken.
    Exact(u16),
    /// Any free port.
    Any,
}

impl PortRequest {
    /// From a flag: absent = the default if free, `0` = any free port, else exactly it.
    pub fn from_flag(flag: Option<u16>, default: u16) -> Self {
        match flag {
            None => PortRequest::Preferred(default),
            Some(0) => PortRequest::Any,
            Some(p) => PortRequest::Exact(p),
        }
    }
}

/// What the command line asked for, one request per port of [`Ports`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequests {
    /// The NameServer's port.
    pub namesrv: PortRequest,
    /// Each node's client port.
    pub client: [PortRequest; NODES],
    /// Each node's raft port.
    pub raft: [PortRequest; NODES],
}

impl PortRequests {
    /// From the flags `--namesrv-port`, `--broker-ports` and `--raft-ports` (lists of
    /// [`NODES`] ports); `Err` names a list of the wrong length.
    pub fn from_flags(
        namesrv: Option<u16>,
        client: Option<&[u16]>,
        raft: Option<&[u16]>,
    ) -> Result<Self, String> {
        let list = |flag: &str, given: Option<&[u16]>, defaults: [u16; NODES]| match given {
            None => Ok(defaults.map(PortRequest::Preferred)),
            Some(ports) if ports.len() == NODES => {
                let mut out = [PortRequest::Any; NODES];
                for (o, (p, d)) in out.iter_mut().zip(ports.iter().zip(defaults)) {
                    *o = PortRequest::from_flag(Some(*p), d);
                }
                Ok(out)
            }
            Some(ports) => Err(format!(
                "{flag} takes {NODES} comma-separated ports (n0,n1,n2), not {}",
                ports.len()
            )),
        };
        Ok(PortRequests {
            namesrv: PortRequest::from_flag(namesrv, DEFAULT_PORTS.namesrv),
            client: list("--broker-ports", client, DEFAULT_PORTS.client)?,
            raft: list("--raft-ports", raft, DEFAULT_PORTS.raft)?,
        })
    }
}

/// Chooses every port in order. `bind(port)` reserves a port (`0` = any free one) and
/// returns it with a guard holding it; the guards come back so that no later choice can
/// take an earlier one, and the caller releases them just before starting the servers.
pub fn choose_ports<G>(
    requests: &PortRequests,
    mut bind: impl FnMut(u16) -> io::Result<(u16, G)>,
) -> Result<(Ports, Vec<G>), String> {
    let mut guards = Vec::new();
    let mut choose = |what: String, request: PortRequest| -> Result<u16, String> {
        let (port, guard) = match request {
            PortRequest::Preferred(p) => match bind(p) {
                Ok(got) => got,
                Err(_) => bind(0)
                    .map_err(|e| format!("no free port for the {what} ({p} is taken): {e}"))?,
            },
            PortRequest::Exact(p) => {
                bind(p).map_err(|e| format!("port {p} for the {what} is not free: {e}"))?
            }
            PortRequest::Any => bind(0).map_err(|e| format!("no free port for the {what}: {e}"))?,
        };
        guards.push(guard);
        Ok(port)
    };
    let namesrv = choose("NameServer (--namesrv-port)".into(), requests.namesrv)?;
    let mut client = [0; NODES];
    let mut raft = [0; NODES];
    for node in 0..NODES {
        client[node] = choose(
            format!("client port of n{node} (--broker-ports)"),
            requests.client[node],
        )?;
        raft[node] = choose(
            format!("raft port of n{node} (--raft-ports)"),
            requests.raft[node],
        )?;
    }
    Ok((
        Ports {
            namesrv,
            client,
            raft,
        },
        guards,
    ))
}

/// Reserves `port` (`0` = any free one) on every interface, as the brokers' client
/// listeners bind, which also fails while a server listens on it on loopback only.
pub fn reserve(port: u16) -> io::Result<(u16, TcpListener)> {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))?;
    Ok((listener.local_addr()?.port(), listener))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// A fake machine: `taken` ports refuse; `0` gets the next unused port from 50000.
    fn fake(taken: &[u16]) -> impl FnMut(u16) -> io::Result<(u16, u16)> {
        let mut used: BTreeSet<u16> = taken.iter().copied().collect();
        let mut next = 50000;
        move |p| {
            let p = if p == 0 {
                while used.contains(&next) {
                    next += 1;
                }
                next
            } else {
                p
            };
            if !used.insert(p) {
                return Err(io::Error::new(io::ErrorKind::AddrInUse, "in use"));
            }
            Ok((p, p))
        }
    }

    fn defaults() -> PortRequests {
        PortRequests::from_flags(None, None, None).unwrap()
    }

    #[test]
    fn defaults_are_kept_when_free() {
        let (ports, guards) = choose_ports(&defaults(), fake(&[])).unwrap();
        assert_eq!(ports, DEFAULT_PORTS);
        assert_eq!(guards.len(), 1 + 2 * NODES, "every port stays reserved");
    }

    #[test]
    fn a_taken_default_is_replaced_by_a_free_port_and_the_others_stay() {
        let (ports, _) = choose_ports(&defaults(), fake(&[9876, 30921, 40913, 50000])).unwrap();
        assert_eq!(ports.namesrv, 50001);
        assert_eq!(ports.client, [30911, 50002, 30931]);
        assert_eq!(ports.raft, [40911, 40912, 50003]);
    }

    #[test]
    fn zero_means_any_free_port_and_exact_ports_are_used() {
        let req =
            PortRequests::from_flags(Some(0), Some(&[0, 0, 0]), Some(&[7001, 0, 7003])).unwrap();
        let (ports, _) = choose_ports(&req, fake(&[])).unwrap();
        assert_eq!(ports.namesrv, 50000);
        assert_eq!(ports.client, [50001, 50002, 50004]);
        assert_eq!(ports.raft, [7001, 50003, 7003]);
        let all: BTreeSet<u16> = [ports.namesrv]
            .into_iter()
            .chain(ports.client)
            .chain(ports.raft)
            .collect();
        assert_eq!(all.len(), 1 + 2 * NODES, "no port chosen twice");
    }

    #[test]
    fn a_taken_exact_port_is_an_error_naming_flag_and_port() {
        let req = PortRequests::from_flags(Some(9000), None, None).unwrap();
        let e = choose_ports(&req, fake(&[9000])).unwrap_err();
        assert!(
            e.contains("port 9000") && e.contains("--namesrv-port"),
            "{e}"
        );
        // The same exact port twice: the second is taken by the first.
        let req = PortRequests::from_flags(None, Some(&[7000, 7000, 0]), None).unwrap();
        let e = choose_ports(&req, fake(&[])).unwrap_err();
        assert!(e.contains("port 7000") && e.contains("n1"), "{e}");
    }

    #[test]
    fn port_lists_must_name_every_node() {
        let e = PortRequests::from_flags(None, Some(&[1, 2]), None).unwrap_err();
        assert!(e.contains("--broker-ports") && e.contains("3"), "{e}");
        let e = PortRequests::from_flags(None, None, Some(&[1, 2, 3, 4])).unwrap_err();
        assert!(e.contains("--raft-ports"), "{e}");
    }

    #[test]
    fn reserve_holds_the_port_until_dropped() {
        let (port, guard) = reserve(0).unwrap();
        assert_ne!(port, 0);
        assert!(reserve(port).is_err(), "a reserved port is taken");
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_err(),
            "also on loopback"
        );
        drop(guard);
        let (again, _g) = reserve(port).unwrap();
        assert_eq!(again, port);
    }
}
