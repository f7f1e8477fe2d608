//! Connection limits: per route and per client address (the peer's, or the one a trusted
//! proxy reports), held by a guard that releases them when the stream ends.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::HeaderMap;
use ipnet::IpNet;
use parking_lot::Mutex;

/// Open streams per client address.
#[derive(Debug, Default)]
pub struct PerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// Limits a stream holds; released on drop.
#[derive(Debug, Default)]
pub struct Held {
    route: Option<Arc<AtomicUsize>>,
    ip: Option<(Arc<PerIp>, IpAddr)>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(r) = &self.route {
            r.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some((per_ip, ip)) = &self.ip {
            let mut m = per_ip.open.lock();
            if let Some(n) = m.get_mut(ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(ip);
                }
            }
        }
    }
}

impl Held {
    /// Take a place on a route holding at most `max` streams (0: no limit).
    pub fn route(&mut self, open: &Arc<AtomicUsize>, max: usize) -> bool {
        let n = open.fetch_add(1, Ordering::Relaxed);
        if max > 0 && n >= max {
            open.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        self.route = Some(open.clone());
        true
    }

    /// Take a place for `ip`, which may hold at most `max` streams (0: no limit).
    pub fn ip(&mut self, per_ip: &Arc<PerIp>, ip: IpAddr, max: usize) -> bool {
        if max == 0 {
            return true;
        }
        let ip = limit_key(ip);
        let mut m = per_ip.open.lock();
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        drop(m);
        self.ip = Some((per_ip.clone(), ip));
        true
    }
}

/// What a per-address limit counts: an IPv4 address, or an IPv6 address's /64 (one
/// host usually holds a whole /64).
fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy and `header`
/// names one — then the last address in it that is not itself a trusted proxy.
pub fn client_ip(
    peer: SocketAddr,
    headers: &HeaderMap,
    header: Option<&str>,
    trusted: &[IpNet],
) -> IpAddr {
    let peer_ip = peer.ip().to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let Some(name) = header else { return peer_ip };
    if !is_trusted(&peer_ip) {
        return peer_ip;
    }
    let mut chain: Vec<IpAddr> = Vec::new();
    for v in headers.get_all(name) {
        let Ok(v) = v.to_str() else { return peer_ip };
        for part in v.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => chain.push(ip.to_canonical()),
                Err(_) => return peer_ip,
            }
        }
    }
    chain
        .into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer_ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn proxy_header_only_from_trusted_peers() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 1.2.3.4, 10.0.0.7"),
        );
        let via_proxy: SocketAddr = "10.1.1.1:5000".parse().unwrap();
        let direct: SocketAddr = "8.8.8.8:5000".parse().unwrap();
        let xff = Some("x-forwarded-for");
        assert_eq!(
            client_ip(via_proxy, &h, xff, &trusted),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(direct, &h, xff, &trusted),
            direct.ip(),
            "forged header ignored"
        );
        assert_eq!(client_ip(via_proxy, &h, None, &trusted), via_proxy.ip());
        h.insert("x-forwarded-for", HeaderValue::from_static("junk"));
        assert_eq!(client_ip(via_proxy, &h, xff, &trusted), via_proxy.ip());
    }

    #[test]
    fn places_are_released_on_drop() {
        let per_ip = Arc::new(PerIp::default());
        let route = Arc::new(AtomicUsize::new(0));
        let ip: IpAddr = "1.2.3.4".parse().unwrap();
        let mut a = Held::default();
        assert!(a.route(&route, 2) && a.ip(&per_ip, ip, 1));
        let mut b = Held::default();
        assert!(!b.ip(&per_ip, ip, 1), "second stream from the same address");
        assert!(b.route(&route, 2));
        let mut c = Held::default();
        assert!(!c.route(&route, 2), "route full");
        drop(a);
        assert!(c.route(&route, 2) && c.ip(&per_ip, ip, 1));
        assert_eq!(route.load(Ordering::Relaxed), 2);
        let v6a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let mut d = Held::default();
        assert!(d.ip(&per_ip, v6a, 1));
        assert!(
            !Held::default().ip(&per_ip, v6b, 1),
            "one /64 is one address"
        );
    }
}
