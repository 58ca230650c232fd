//! The SSRF guard: the proxy resolves every name itself, refuses special addresses the
//! remit does not name, and connects to exactly the addresses it checked, so there is no
//! window in which a second lookup could answer differently (DNS rebinding).

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use remit_types::network::PrivateEntry;
use tokio::net::TcpStream;

/// A boxed future, for the object-safe [`Resolve`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Name resolution for the proxy. The system resolver is the default; tests and embedders
/// may supply their own (a fixed table, a DNS server of their choice).
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `host` (a name, never an address literal).
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<IpAddr>>>;
}

/// The host's resolver (`getaddrinfo` on a blocking thread).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) address: IpAddr,
    pub(crate) range: &'static str,
}

/// The special range `ip` is in, if any. IPv4 addresses embedded in IPv6 (mapped,
/// compatible, NAT64, 6to4, Teredo) are judged as the IPv4 address.
pub fn special_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "this-network (0.0.0.0/8)",
        (10, _, _) => "private (10.0.0.0/8)",
        (100, 64..=127, _) => "shared address space (100.64.0.0/10)",
        (127, _, _) => "loopback (127.0.0.0/8)",
        (169, 254, _) => "link-local, where cloud metadata lives (169.254.0.0/16)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) => "documentation (192.0.2.0/24)",
        (192, 88, 99) => "6to4 relay (192.88.99.0/24)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (198, 51, 100) => "documentation (198.51.100.0/24)",
        (203, 0, 113) => "documentation (203.0.113.0/24)",
        (224..=239, _, _) => "multicast (224.0.0.0/4)",
        (240..=255, _, _) => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        // Connecting to it reaches the IPv4 address: judge that.
        return special_v4(v4);
    }
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    // Local-use NAT64 (RFC 8215): its translator reaches whatever its operator's IPv4
    // networks are, with the address laid out by a prefix length only the operator knows.
    if s[..3] == [0x64, 0xff9b, 0x0001] {
        return Some("local-use NAT64 (64:ff9b:1::/48)");
    }
    // IPv4-compatible (deprecated) ::a.b.c.d, IPv4-translated (SIIT) ::ffff:0:a.b.c.d and
    // NAT64 64:ff9b::/96.
    if s[..6] == [0, 0, 0, 0, 0, 0]
        || s[..6] == [0, 0, 0, 0, 0xffff, 0]
        || (s[0] == 0x64 && s[1] == 0xff9b)
    {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return special_v4(v4);
    }
    Some(match s[0] {
        0x0100 if s[1..4] == [0, 0, 0] => "discard (100::/64)",
        0x2001 if s[1] == 0 => "Teredo (2001::/32)",
        0x2001 if s[1] < 0x200 => "IETF protocol assignments (2001::/23)",
        0x2001 if s[1] == 0x0db8 => "documentation (2001:db8::/32)",
        0x2002 => {
            let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
            return special_v4(v4);
        }
        0x3fff if s[1] < 0x1000 => "documentation (3fff::/20)",
        x if x & 0xfe00 == 0xfc00 => "unique local, private (fc00::/7)",
        x if x & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        x if x & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        x if x & 0xff00 == 0xff00 => "multicast (ff00::/8)",
        _ => return None,
    })
}

/// Check every address of `host`; all must be ordinary or named by `private`.
pub(crate) fn check(host: &str, addrs: &[IpAddr], private: &[PrivateEntry]) -> Result<(), Refusal> {
    let name_allowed = private
        .iter()
        .any(|p| matches!(p, PrivateEntry::Name(n) if n == host));
    for ip in addrs {
        if let Some(range) = special_range(*ip) {
            let allowed = name_allowed || private.iter().any(|p| p.contains(*ip)) || {
                // An IPv4-mapped address is allowed when its IPv4 address is.
                match ip {
                    IpAddr::V6(v6) => v6
                        .to_ipv4_mapped()
                        .is_some_and(|v4| private.iter().any(|p| p.contains(IpAddr::V4(v4)))),
                    IpAddr::V4(_) => false,
                }
            };
            if !allowed {
                return Err(Refusal {
                    address: *ip,
                    range,
                });
            }
        }
    }
    Ok(())
}

/// Connect to the first address that answers, each within `timeout`.
pub(crate) async fn connect(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> io::Result<(TcpStream, SocketAddr)> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, *addr));
            }
            Ok(Err(e)) => last = e,
            Err(_) => {
                last = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting to {addr} timed out"),
                )
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges() {
        for special in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::ffff:0:127.0.0.1",
            "::ffff:0:169.254.169.254",
            "64:ff9b:1::808:808",
            "64:ff9b:1:a9fe:a9:fe00::",
            "2002:7f00:1::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "fd00:ec2::254",
        ] {
            assert!(special_range(ip(special)).is_some(), "{special}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::808:808",
            "::ffff:0:8.8.8.8",
        ] {
            assert_eq!(special_range(ip(public)), None, "{public}");
        }
        assert!(
            special_range(ip("169.254.169.254"))
                .unwrap()
                .contains("metadata")
        );
    }

    #[test]
    fn checks() {
        let private = vec![
            PrivateEntry::parse("127.0.0.1").unwrap(),
            PrivateEntry::parse("git.internal").unwrap(),
        ];
        assert!(check("a", &[ip("127.0.0.1")], &private).is_ok());
        assert!(check("a", &[ip("::ffff:127.0.0.1")], &private).is_ok());
        assert_eq!(
            check("a", &[ip("1.1.1.1"), ip("127.0.0.2")], &private)
                .unwrap_err()
                .address,
            ip("127.0.0.2")
        );
        assert!(check("git.internal", &[ip("10.0.0.1")], &private).is_ok());
        assert!(check("other.internal", &[ip("10.0.0.1")], &private).is_err());
        assert!(check("a", &[ip("169.254.169.254")], &[]).is_err());
    }
}
