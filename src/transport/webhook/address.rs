//! Which addresses deliveries may connect to (server-side request forgery).
//!
//! Webhook endpoints are registered by tenant admins, so by default a
//! delivery reaches only public addresses:
//! * never (whatever the operator allows): link-local addresses
//!   (`169.254.0.0/16`, `fe80::/10`, where cloud metadata services live),
//!   the known metadata addresses outside them (`100.100.100.200`,
//!   `fd00:ec2::254`), unspecified, multicast, broadcast, `0.0.0.0/8` and
//!   documentation ranges;
//! * only when `--webhook-allow-private` names the network or the host:
//!   loopback, private (RFC 1918), shared (CGNAT `100.64.0.0/10`),
//!   benchmarking (`198.18.0.0/15`) and unique-local (`fc00::/7`) addresses,
//!   so a self-hoster's local receiver still works.
//!
//! IPv4-mapped (`::ffff:a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`) addresses
//! are judged by the IPv4 address they carry.
//!
//! Invariant: the check runs on the addresses actually connected to (after
//! DNS resolution, for every attempt), not on the URL's text alone, so a name
//! re-pointed at an internal address is refused too; an allowed host name
//! allows only the internal addresses it resolves to, never a forbidden one.

use hyper_util::client::legacy::connect::dns::Name;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// What an address is, for deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Globally routable: always allowed.
    Public,
    /// Loopback or private: allowed only when the operator allows it.
    Internal,
    /// Link-local, metadata or unroutable: never allowed.
    Forbidden,
}

/// The operator's `--webhook-allow-private` list: networks and host names
/// whose internal addresses deliveries may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    networks: Vec<(IpAddr, u8)>,
    hosts: Vec<String>,
}

impl AllowList {
    /// Parses entries: `127.0.0.1/32`, `10.0.0.0/8`, `::1`, an address alone
    /// (one host), or a host name (`receiver.lan`, matched case-insensitively).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut list = Self::default();
        for entry in entries.iter().map(|e| e.as_ref().trim()) {
            if entry.is_empty() {
                continue;
            }
            if let Some((ip, bits)) = entry.split_once('/') {
                let ip: IpAddr = ip
                    .parse()
                    .map_err(|_| format!("`{entry}`: not an address/prefix"))?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let bits: u8 = bits
                    .parse()
                    .ok()
                    .filter(|bits| *bits <= max)
                    .ok_or_else(|| format!("`{entry}`: the prefix length is 0 to {max}"))?;
                list.networks.push((ip, bits));
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                list.networks
                    .push((ip, if ip.is_ipv4() { 32 } else { 128 }));
            } else if is_host_name(entry) {
                list.hosts.push(normalize_host(entry));
            } else {
                return Err(format!("`{entry}`: not a network, address or host name"));
            }
        }
        Ok(list)
    }

    /// True when `ip` is in an allowed network or `host` is an allowed name.
    pub fn allows(&self, ip: IpAddr, host: Option<&str>) -> bool {
        let by_network = self
            .networks
            .iter()
            .any(|(network, bits)| in_network(ip, *network, *bits));
        let by_name = host.is_some_and(|host| self.hosts.contains(&normalize_host(host)));
        by_network || by_name
    }
}

/// The resolver of the delivery client (the system resolver, filtered) and
/// the check of literal addresses.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Internal networks and hosts the operator allows.
    pub allow_private: Arc<AllowList>,
}

impl AddressPolicy {
    /// Refuses `ip` (reached through the name `host`, if any) unless it is
    /// public or an allowed internal address.
    pub fn check(&self, ip: IpAddr, host: Option<&str>) -> Result<(), io::Error> {
        let refused = |why: String| Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
        match reach(ip) {
            Reach::Public => Ok(()),
            Reach::Internal if self.allow_private.allows(ip, host) => Ok(()),
            Reach::Internal => refused(format!(
                "{ip} is a loopback or private address; the operator can allow it with --webhook-allow-private"
            )),
            Reach::Forbidden => refused(format!(
                "{ip} is a link-local, metadata or unroutable address; webhooks never deliver there"
            )),
        }
    }
}

type Resolving = Pin<Box<dyn Future<Output = io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl tower_service::Service<Name> for AddressPolicy {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Resolving {
        let policy = self.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|addr| match policy.check(addr.ip(), Some(&host)) {
                    Ok(()) => true,
                    Err(err) => {
                        refusal.get_or_insert(err);
                        false
                    }
                })
                .collect();
            match refusal {
                Some(err) if allowed.is_empty() => Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{host}: {err}"),
                )),
                _ => Ok(allowed.into_iter()),
            }
        })
    }
}

/// What `ip` is for deliveries (see the module doc).
pub fn reach(ip: IpAddr) -> Reach {
    match ip {
        IpAddr::V4(v4) => reach_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => reach_v4(v4),
            None => reach_v6(v6),
        },
    }
}

fn reach_v4(ip: Ipv4Addr) -> Reach {
    let [a, b, ..] = ip.octets();
    let metadata = ip == Ipv4Addr::new(100, 100, 100, 200);
    if metadata
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
    {
        return Reach::Forbidden;
    }
    let shared = a == 100 && (64..128).contains(&b);
    let benchmarking = a == 198 && (b == 18 || b == 19);
    if ip.is_loopback() || ip.is_private() || shared || benchmarking {
        return Reach::Internal;
    }
    Reach::Public
}

fn reach_v6(ip: Ipv6Addr) -> Reach {
    let first = ip.segments()[0];
    let metadata = ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254);
    let documentation = first == 0x2001 && ip.segments()[1] == 0x0db8;
    if metadata
        || ip.is_unicast_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || documentation
    {
        return Reach::Forbidden;
    }
    let site_local = first & 0xffc0 == 0xfec0;
    if ip.is_loopback() || ip.is_unique_local() || site_local {
        return Reach::Internal;
    }
    Reach::Public
}

/// The IPv4 address an IPv4-mapped or NAT64 (`64:ff9b::/96`) address carries.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let segments = ip.segments();
    let nat64 = segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    let [.., a, b, c, d] = ip.octets();
    nat64.then_some(Ipv4Addr::new(a, b, c, d))
}

fn in_network(ip: IpAddr, network: IpAddr, bits: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => prefix_eq(&ip.octets(), &net.octets(), bits),
        (IpAddr::V6(ip), IpAddr::V6(net)) => prefix_eq(&ip.octets(), &net.octets(), bits),
        (IpAddr::V6(ip), IpAddr::V4(_)) => {
            embedded_v4(ip).is_some_and(|v4| in_network(IpAddr::V4(v4), network, bits))
        }
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

fn prefix_eq(ip: &[u8], network: &[u8], bits: u8) -> bool {
    let whole = usize::from(bits / 8);
    let rest = bits % 8;
    if ip[..whole] != network[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        ip[whole] & mask == network[whole] & mask
    }
}

fn is_host_name(text: &str) -> bool {
    text.len() <= 253
        && text.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_are_public_internal_or_forbidden() {
        for forbidden in [
            "169.254.169.254",
            "169.254.0.1",
            "100.100.100.200",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "fe80::1",
            "::",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert_eq!(reach(ip(forbidden)), Reach::Forbidden, "{forbidden}");
        }
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "198.18.0.1",
            "::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert_eq!(reach(ip(internal)), Reach::Internal, "{internal}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert_eq!(reach(ip(public)), Reach::Public, "{public}");
        }
    }

    #[test]
    fn the_allow_list_opens_internal_addresses_only() {
        let closed = AddressPolicy::default();
        assert!(closed.check(ip("1.1.1.1"), None).is_ok());
        assert!(closed.check(ip("127.0.0.1"), None).is_err());
        let list = AllowList::parse(&["127.0.0.1/32", "10.0.0.0/8", "Receiver.LAN.", "0.0.0.0/0"])
            .unwrap();
        let open = AddressPolicy {
            allow_private: Arc::new(list),
        };
        assert!(open.check(ip("127.0.0.1"), None).is_ok());
        assert!(open.check(ip("10.9.8.7"), None).is_ok());
        assert!(open.check(ip("::ffff:10.9.8.7"), None).is_ok());
        assert!(open.check(ip("192.168.1.1"), Some("receiver.lan")).is_ok());
        assert!(
            open.check(ip("169.254.169.254"), Some("receiver.lan"))
                .is_err(),
            "metadata stays refused even under 0.0.0.0/0 and an allowed name"
        );
        let narrow = AddressPolicy {
            allow_private: Arc::new(AllowList::parse(&["127.0.0.1"]).unwrap()),
        };
        assert!(narrow.check(ip("127.0.0.2"), None).is_err());
        assert!(narrow.check(ip("::1"), Some("localhost")).is_err());
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in ["10.0.0.0/33", "::/129", "not a host", "1.2.3.4/x", "a..b"] {
            assert!(AllowList::parse(&[bad]).is_err(), "{bad}");
        }
        assert!(prefix_eq(&[10, 200, 0, 0], &[10, 128, 0, 0], 9));
        assert!(!prefix_eq(&[10, 100, 0, 0], &[10, 128, 0, 0], 9));
    }
}
