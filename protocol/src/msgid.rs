//! Message ids (spec §4): the client `UNIQ_KEY` and the broker's offset message id.
//!
//! Both are uppercase hex of a small binary layout and have the same length
//! (32 chars with IPv4, 56 with IPv6), so they cannot be told apart by format.
//! Servers treat UNIQ_KEY as opaque; the parser exists for tools and tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};

use crate::error::{ProtocolError, Result};

const DAY_MS: i64 = 86_400_000;

/// Generates `UNIQ_KEY`s for one process (spec §4.1); shareable across threads.
///
/// The counter is per generator and wraps at 16 bits; the first id has counter 1.
#[derive(Debug)]
pub struct UniqKeyGenerator {
    /// IP address, low 16 bits of the pid and the random int: the same in every id.
    prefix: Vec<u8>,
    /// Counter of the last id handed out.
    counter: AtomicU16,
}

impl UniqKeyGenerator {
    /// A generator for a process at `ip` with process id `pid` (low 16 bits used) and a random int.
    pub fn new(ip: IpAddr, pid: u32, random: i32) -> Self {
        let mut prefix = ip_octets(ip);
        // Only the low 16 bits of the pid are part of the id.
        prefix.extend_from_slice(&((pid & 0xFFFF) as u16).to_be_bytes());
        prefix.extend_from_slice(&random.to_be_bytes());
        Self {
            prefix,
            counter: AtomicU16::new(0),
        }
    }

    /// A new id for the wall-clock time `now_unix_ms` (ms since the Unix epoch, UTC).
    pub fn generate(&self, now_unix_ms: i64) -> String {
        let counter = self.counter.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let mut raw = self.prefix.clone();
        raw.extend_from_slice(&ms_in_month_field(now_unix_ms).to_be_bytes());
        raw.extend_from_slice(&counter.to_be_bytes());
        hex_upper(&raw)
    }
}

/// Milliseconds since the first day of the month of `now_unix_ms`, 00:00 UTC.
///
/// Java uses local time; RaftMQ uses UTC so ids do not depend on the host's zone.
pub fn ms_since_month_start(now_unix_ms: i64) -> i64 {
    let days = now_unix_ms.div_euclid(DAY_MS);
    (day_of_month(days) - 1) * DAY_MS + now_unix_ms.rem_euclid(DAY_MS)
}

/// The 32-bit field as Java writes it: `(int) (now - monthStart)`, wrapping after ~24.8 days.
fn ms_in_month_field(now_unix_ms: i64) -> i32 {
    ms_since_month_start(now_unix_ms) as i32
}

/// Day of month (1…31) of the civil UTC date `days` after 1970-01-01 (H. Hinnant's algorithm).
fn day_of_month(days: i64) -> i64 {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], year starting in March
    let mp = (5 * doy + 2) / 153; // [0, 11]
    doy - (153 * mp + 2) / 5 + 1
}

/// The fields of a `UNIQ_KEY` (spec §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniqKeyParts {
    /// Producer IP address (4 or 16 bytes).
    pub ip: IpAddr,
    /// Low 16 bits of the producer's process id.
    pub pid: u16,
    /// Per-process random int (Java: class-loader hash code).
    pub random: i32,
    /// Milliseconds since the month started; negative once past ~24.8 days (Java `int`).
    pub ms_in_month: i32,
    /// Per-process counter, wrapping at 16 bits.
    pub counter: u16,
}

impl UniqKeyParts {
    /// The id as uppercase hex.
    pub fn encode(&self) -> String {
        let mut raw = ip_octets(self.ip);
        raw.extend_from_slice(&self.pid.to_be_bytes());
        raw.extend_from_slice(&self.random.to_be_bytes());
        raw.extend_from_slice(&self.ms_in_month.to_be_bytes());
        raw.extend_from_slice(&self.counter.to_be_bytes());
        hex_upper(&raw)
    }
}

/// Parses a `UNIQ_KEY`: 32 (IPv4) or 56 (IPv6) hex characters.
pub fn parse_uniq_key(id: &str) -> Result<UniqKeyParts> {
    let raw = id_bytes(id)?;
    let ip_len = raw.len() - 12;
    let (ip, rest) = raw.split_at(ip_len);
    let ip = ip_from_octets(ip).ok_or_else(|| invalid(id, "bad address length"))?;
    let field = |at: usize| -> [u8; 4] { [rest[at], rest[at + 1], rest[at + 2], rest[at + 3]] };
    Ok(UniqKeyParts {
        ip,
        pid: u16::from_be_bytes([rest[0], rest[1]]),
        random: i32::from_be_bytes(field(2)),
        ms_in_month: i32::from_be_bytes(field(6)),
        counter: u16::from_be_bytes([rest[10], rest[11]]),
    })
}

/// The broker's offset message id: STOREHOST address and port, then PHYSICALOFFSET (spec §4.2).
pub fn encode_offset_msg_id(store_host: SocketAddr, physical_offset: i64) -> String {
    let mut s = String::with_capacity(56);
    push_offset_msg_id(&mut s, store_host, physical_offset);
    s
}

/// Appends the offset message id to `out` (as [`encode_offset_msg_id`], without allocating
/// a string of its own).
pub fn push_offset_msg_id(out: &mut String, store_host: SocketAddr, physical_offset: i64) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut raw = [0u8; 28];
    let ip_len = match store_host.ip() {
        IpAddr::V4(v4) => {
            raw[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => {
            raw[..16].copy_from_slice(&v6.octets());
            16
        }
    };
    raw[ip_len..ip_len + 4].copy_from_slice(&i32::from(store_host.port()).to_be_bytes());
    raw[ip_len + 4..ip_len + 12].copy_from_slice(&physical_offset.to_be_bytes());
    for b in &raw[..ip_len + 12] {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xF)]));
    }
}

/// Decodes an offset message id into the storing broker's address and the physical offset.
pub fn decode_offset_msg_id(id: &str) -> Result<(SocketAddr, i64)> {
    let raw = id_bytes(id)?;
    let ip_len = raw.len() - 12;
    let ip = ip_from_octets(&raw[..ip_len]).ok_or_else(|| invalid(id, "bad address length"))?;
    let mut port = [0u8; 4];
    port.copy_from_slice(&raw[ip_len..ip_len + 4]);
    let port =
        u16::try_from(i32::from_be_bytes(port)).map_err(|_| invalid(id, "port out of range"))?;
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&raw[ip_len + 4..]);
    Ok((SocketAddr::new(ip, port), i64::from_be_bytes(offset)))
}

fn invalid(id: &str, reason: &'static str) -> ProtocolError {
    ProtocolError::InvalidMessageId {
        id: id.to_owned(),
        reason,
    }
}

/// Hex-decodes an id of 32 or 56 characters into 16 or 28 bytes.
fn id_bytes(id: &str) -> Result<Vec<u8>> {
    if id.len() != 32 && id.len() != 56 {
        return Err(invalid(id, "length must be 32 or 56 hex characters"));
    }
    id.as_bytes()
        .chunks_exact(2)
        .map(|pair| Some(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| invalid(id, "not hexadecimal"))
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xF)]));
    }
    s
}

fn ip_octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn ip_from_octets(b: &[u8]) -> Option<IpAddr> {
    if let Ok(a) = <[u8; 4]>::try_from(b) {
        return Some(IpAddr::V4(Ipv4Addr::from(a)));
    }
    <[u8; 16]>::try_from(b)
        .ok()
        .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::message::test_support::socket_addr;
    use proptest::prelude::*;

    const VECTOR_UNIQ: &str = "C0A8010A30391B6D358605265C000001";
    const VECTOR_OFFSET_ID: &str = "C0A8011400002A9F000000000001E240";
    /// 2023-11-01T00:00:00Z.
    const NOV_2023_MS: i64 = 1_698_796_800_000;

    fn producer_ip() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10))
    }

    #[test]
    fn parses_vector_uniq_key() {
        let p = parse_uniq_key(VECTOR_UNIQ).unwrap();
        assert_eq!(
            p,
            UniqKeyParts {
                ip: producer_ip(),
                pid: 0x3039,
                random: 0x1B6D3586,
                ms_in_month: 86_400_000,
                counter: 1
            }
        );
        assert_eq!(p.encode(), VECTOR_UNIQ);
        assert_eq!(parse_uniq_key(&VECTOR_UNIQ.to_lowercase()).unwrap(), p);
    }

    #[test]
    fn generator_reproduces_vector() {
        let g = UniqKeyGenerator::new(producer_ip(), 0x0001_3039, 0x1B6D3586);
        assert_eq!(g.generate(NOV_2023_MS + DAY_MS), VECTOR_UNIQ);
        assert_eq!(
            g.generate(NOV_2023_MS + DAY_MS),
            "C0A8010A30391B6D358605265C000002"
        );
        assert_eq!(parse_uniq_key(&g.generate(NOV_2023_MS)).unwrap().counter, 3);
    }

    #[test]
    fn generator_counter_wraps_and_works_across_threads() {
        let g = UniqKeyGenerator::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 7, -1);
        let ids: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..1000).map(|_| g.generate(0)).collect::<Vec<_>>()))
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let mut counters: Vec<u16> = ids
            .iter()
            .map(|i| parse_uniq_key(i).unwrap().counter)
            .collect();
        counters.sort_unstable();
        assert_eq!(counters, (1..=4000).collect::<Vec<u16>>());
        assert_eq!(ids[0].len(), 56);
        for _ in 4000..65535 {
            g.generate(0);
        }
        assert_eq!(parse_uniq_key(&g.generate(0)).unwrap().counter, 0);
        assert_eq!(parse_uniq_key(&g.generate(0)).unwrap().counter, 1);
    }

    #[test]
    fn month_start_in_utc() {
        assert_eq!(ms_since_month_start(0), 0);
        assert_eq!(
            ms_since_month_start(NOV_2023_MS - 1),
            30 * DAY_MS + DAY_MS - 1
        ); // Oct 31
        assert_eq!(
            ms_since_month_start(1_700_000_000_000),
            1_700_000_000_000 - NOV_2023_MS
        );
        // 2024-02-29 (leap day) and 2024-03-01.
        assert_eq!(ms_since_month_start(1_709_164_800_000), 28 * DAY_MS);
        assert_eq!(ms_since_month_start(1_709_251_200_000), 0);
        // 2000-02-29 (400-year leap) and 1969-12-31T23:59:59.999Z.
        assert_eq!(ms_since_month_start(951_782_400_000), 28 * DAY_MS);
        assert_eq!(ms_since_month_start(-1), 31 * DAY_MS - 1);
        // Past ~24.8 days the Java int wraps negative; so does the id field.
        let g = UniqKeyGenerator::new(producer_ip(), 1, 1);
        let late = parse_uniq_key(&g.generate(NOV_2023_MS + 29 * DAY_MS)).unwrap();
        assert_eq!(late.ms_in_month, (29 * DAY_MS) as i32);
        assert!(late.ms_in_month < 0);
        // Extreme clocks do not panic.
        let _ = g.generate(i64::MIN);
        let _ = g.generate(i64::MAX);
    }

    #[test]
    fn offset_msg_id_vector() {
        let host: SocketAddr = "192.168.1.20:10911".parse().unwrap();
        assert_eq!(encode_offset_msg_id(host, 123_456), VECTOR_OFFSET_ID);
        assert_eq!(
            decode_offset_msg_id(VECTOR_OFFSET_ID).unwrap(),
            (host, 123_456)
        );
    }

    #[test]
    fn offset_msg_id_ipv6() {
        let host: SocketAddr = "[2001:db8::1]:10911".parse().unwrap();
        let id = encode_offset_msg_id(host, i64::MAX);
        assert_eq!(id.len(), 56);
        assert_eq!(&id[..32], "20010DB8000000000000000000000001");
        assert_eq!(decode_offset_msg_id(&id).unwrap(), (host, i64::MAX));
    }

    #[test]
    fn malformed_ids() {
        let bad_len = "C0A8011400002A9F000000000001E24";
        let err = |id: &str, reason| ProtocolError::InvalidMessageId {
            id: id.into(),
            reason,
        };
        assert_eq!(
            decode_offset_msg_id(bad_len),
            Err(err(bad_len, "length must be 32 or 56 hex characters"))
        );
        assert!(decode_offset_msg_id("").is_err());
        assert!(parse_uniq_key(&"0".repeat(40)).is_err());
        let bad_hex = "G0A8011400002A9F000000000001E240";
        assert_eq!(
            decode_offset_msg_id(bad_hex),
            Err(err(bad_hex, "not hexadecimal"))
        );
        assert_eq!(
            parse_uniq_key(bad_hex),
            Err(err(bad_hex, "not hexadecimal"))
        );
        // Multi-byte UTF-8 of the right byte length is not hex either.
        let non_ascii = format!("é{}", &VECTOR_OFFSET_ID[2..]);
        assert_eq!(non_ascii.len(), 32);
        assert!(decode_offset_msg_id(&non_ascii).is_err());
        let bad_port = "C0A80114FFFFFFFF000000000001E240";
        assert_eq!(
            decode_offset_msg_id(bad_port),
            Err(err(bad_port, "port out of range"))
        );
    }

    proptest! {
        #[test]
        fn offset_id_round_trip(host in socket_addr(), offset in any::<i64>()) {
            let id = encode_offset_msg_id(host, offset);
            prop_assert_eq!(decode_offset_msg_id(&id).unwrap(), (host, offset));
        }

        #[test]
        fn uniq_key_round_trip(host in socket_addr(), pid in any::<u16>(), random in any::<i32>(),
                               ms in any::<i32>(), counter in any::<u16>()) {
            let parts = UniqKeyParts { ip: host.ip(), pid, random, ms_in_month: ms, counter };
            prop_assert_eq!(parse_uniq_key(&parts.encode()).unwrap(), parts);
        }

        #[test]
        fn arbitrary_text_never_panics(s in "[0-9A-Fa-fé ]{0,60}") {
            let _ = parse_uniq_key(&s);
            let _ = decode_offset_msg_id(&s);
        }
    }
}
