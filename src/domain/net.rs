//! Hosts in URLs the engine fetches from the host's network namespace (`ADD <url>`,
//! `remote=`): where they point, and whether that is inside the host (loopback,
//! link-local with the cloud metadata address, private, unspecified).
//!
//! The engine's HTTP client and the resolver it ends in accept more spellings of an
//! address than `std`'s parser: `2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1` are all
//! 127.0.0.1 to `inet_aton`. They are read here as the addresses they are.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The host and port of a URL, as its fetcher connects to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlHost {
    /// Lower case, percent-decoded, without brackets or a trailing dot.
    pub host: String,
    /// The explicit port, else the scheme's default.
    pub port: u16,
    /// Whether the URL named the port.
    pub explicit_port: bool,
}

impl UrlHost {
    /// `host` or `host:port` as the URL gave it (IPv6 in brackets).
    pub fn display(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.explicit_port { format!("{host}:{}", self.port) } else { host }
    }

    /// The address, when the host is one (in any spelling `inet_aton` takes).
    pub fn ip(&self) -> Option<IpAddr> {
        parse_ip(&self.host)
    }
}

/// Why a URL's host cannot be judged: refused rather than guessed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// Not `scheme://authority/...` (or `git@host:path`) with a known scheme.
    NotAUrl,
    /// An authority with no host, a bad port, or a malformed IPv6 literal.
    Malformed,
    /// A host with characters outside ASCII: IDNA maps some to digits and dots.
    NonAscii,
}

/// The schemes a fetch can go out on, with their default ports.
const SCHEMES: [(&str, u16); 5] = [("http://", 80), ("https://", 443), ("git://", 9418), ("ssh://", 22), ("git+ssh://", 22)];

/// Does this text name something to fetch rather than a path in the context? http(s),
/// git and ssh URLs and scp-like `git@host:path` (case-insensitive).
pub fn is_remote(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.starts_with("git@") || SCHEMES.iter().any(|(s, _)| lower.starts_with(s))
}

/// Where a URL connects to.
pub fn url_host(url: &str) -> Result<UrlHost, HostError> {
    let lower = url.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("git@") {
        // scp-like: git@host:path (ssh).
        let end = rest.find([':', '/']).unwrap_or(rest.len());
        let host = decode_host(&rest[..end])?;
        return Ok(UrlHost { host, port: 22, explicit_port: false });
    }
    let (scheme, default_port) = SCHEMES.iter().find(|(s, _)| lower.starts_with(s)).ok_or(HostError::NotAUrl)?;
    let rest = &url[scheme.len()..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    // Userinfo ends at the last '@' (as Go's url.Parse reads it).
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (inside, after) = v6.split_once(']').ok_or(HostError::Malformed)?;
        match after {
            "" => (inside.to_string(), None),
            p => (inside.to_string(), Some(p.strip_prefix(':').ok_or(HostError::Malformed)?)),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    let (port, explicit_port) = match port {
        None | Some("") => (*default_port, false),
        Some(p) => (p.parse::<u16>().map_err(|_| HostError::Malformed)?, true),
    };
    let mut host = decode_host(&host)?;
    // An IPv6 zone (`fe80::1%eth0`) does not change which address it is.
    if host.contains(':') {
        host.truncate(host.find('%').unwrap_or(host.len()));
        host.parse::<Ipv6Addr>().map_err(|_| HostError::Malformed)?;
    }
    if host.is_empty() {
        return Err(HostError::Malformed);
    }
    Ok(UrlHost { host, port, explicit_port })
}

/// Percent-decoded (Go's URL parser decodes hosts), lower case, no trailing dot.
fn decode_host(raw: &str) -> Result<String, HostError> {
    let mut out = Vec::with_capacity(raw.len());
    let bytes = raw.as_bytes();
    let mut i = 0;
    let hex = |i: usize| bytes.get(i).and_then(|b| (*b as char).to_digit(16));
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    let text = String::from_utf8(out).map_err(|_| HostError::NonAscii)?;
    if !text.is_ascii() {
        return Err(HostError::NonAscii);
    }
    let mut host = text.to_ascii_lowercase();
    if host.ends_with('.') && !host.ends_with("..") {
        host.pop();
    }
    Ok(host)
}

/// An address in any spelling: IPv6 (`::1`, `::ffff:127.0.0.1`), dotted IPv4, or what
/// `inet_aton` takes: 1-4 parts, each decimal, `0x` hex or `0` octal, the last one filling
/// the remaining bytes (`2130706433`, `0x7f000001`, `127.1`, `0177.0.0.01`).
pub fn parse_ip(host: &str) -> Option<IpAddr> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.contains(':') {
        let bare = &host[..host.find('%').unwrap_or(host.len())];
        return bare.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(parts.len());
    for p in &parts {
        nums.push(aton_part(p)?);
    }
    let (last, init) = nums.split_last()?;
    let mut addr: u64 = 0;
    for n in init {
        if *n > 0xff {
            return None;
        }
        addr = addr << 8 | n;
    }
    let rest_bits = 8 * (4 - init.len() as u32);
    if rest_bits < 64 && *last >= 1u64 << rest_bits {
        return None;
    }
    addr = addr << rest_bits | last;
    Some(IpAddr::V4(Ipv4Addr::from(addr as u32)))
}

fn aton_part(p: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (h, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if p.is_empty() || digits.len() > 16 {
        return None;
    }
    if digits.is_empty() {
        // `0x` alone is 0 to inet_aton.
        return (radix == 16).then_some(0);
    }
    u64::from_str_radix(digits, radix).ok().filter(|n| *n <= u32::MAX as u64)
}

/// What an address inside the host is, or `None` for a public one.
pub fn internal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => {
            // IPv4-mapped, -compatible and NAT64 addresses reach the IPv4 address inside.
            let s = v6.segments();
            let embedded = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
                internal_v4(embedded)
            } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                internal_v4(embedded)
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[0] & 0xffc0 == 0xfec0 || s[0] & 0xfe00 == 0xfc00 {
                Some("private")
            } else if s[0] & 0xff00 == 0xff00 {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (127, _, _) => Some("loopback"),
        (0, _, _) => Some("unspecified"),
        (169, 254, _) => Some("link-local (the cloud metadata address is one)"),
        (10, _, _) | (192, 168, _) => Some("private"),
        (172, b, _) if (16..32).contains(&b) => Some("private"),
        (100, b, _) if (64..128).contains(&b) => Some("shared (carrier-grade NAT)"),
        (192, 0, 0) | (198, 18..=19, _) => Some("reserved"),
        (224..=255, _, _) => Some("multicast or reserved"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_spelling_of_an_address() {
        for (spelling, addr) in [
            ("127.0.0.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("0X7F000001", "127.0.0.1"),
            ("017700000001", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("0x7f.1", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("0", "0.0.0.0"),
            ("169.254.169.254", "169.254.169.254"),
            ("0xa9fea9fe", "169.254.169.254"),
            ("::1", "::1"),
            ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
            ("fe80::1%eth0", "fe80::1"),
        ] {
            assert_eq!(parse_ip(spelling), Some(ip(addr)), "{spelling}");
        }
        for name in ["localhost", "example.com", "1.2.3.4.5", "256.1.1.1", "1.2.3.0x100", "08.1.1.1", "", "4294967296", "1..2"] {
            assert_eq!(parse_ip(name), None, "{name}");
        }
    }

    #[test]
    fn inside_the_host() {
        for a in ["127.0.0.1", "127.9.9.9", "0.0.0.0", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
                  "169.254.169.254", "100.100.100.200", "::1", "::", "fe80::1", "fc00::1", "fd12::1",
                  "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1", "64:ff9b::a9fe:a9fe", "255.255.255.255"] {
            assert!(internal(ip(a)).is_some(), "{a}");
        }
        for a in ["8.8.8.8", "172.32.0.1", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8", "100.128.0.1"] {
            assert_eq!(internal(ip(a)), None, "{a}");
        }
        assert_eq!(internal(ip("169.254.169.254")), Some("link-local (the cloud metadata address is one)"));
    }

    #[test]
    fn url_hosts() {
        let h = |u: &str| url_host(u).unwrap();
        assert_eq!(h("http://127.0.0.1:8080/x"), UrlHost { host: "127.0.0.1".into(), port: 8080, explicit_port: true });
        assert_eq!(h("https://Example.COM./a?b#c").host, "example.com");
        assert_eq!(h("https://example.com/").port, 443);
        assert_eq!(h("http://user:pw@evil@10.0.0.1/").host, "10.0.0.1");
        assert_eq!(h("http://[::1]:81/").host, "::1");
        assert_eq!(h("http://[::1]:81/").display(), "[::1]:81");
        assert_eq!(h("HTTP://%31%32%37.0.0.1/").host, "127.0.0.1");
        assert_eq!(h("http://example.com?x").host, "example.com");
        assert_eq!(h("git@github.com:org/repo.git"), UrlHost { host: "github.com".into(), port: 22, explicit_port: false });
        assert_eq!(h("git://git.example:9419/r").port, 9419);
        assert_eq!(h("http://2130706433/").ip(), Some(ip("127.0.0.1")));
        assert_eq!(url_host("/local/path"), Err(HostError::NotAUrl));
        assert_eq!(url_host("http:///path"), Err(HostError::Malformed));
        assert_eq!(url_host("http://h:99999/"), Err(HostError::Malformed));
        assert_eq!(url_host("http://１２７。０。０。１/"), Err(HostError::NonAscii));
        assert_eq!(url_host("http://%ef%bc%91/"), Err(HostError::NonAscii));
        assert!(is_remote("HTTPS://x") && is_remote("git@h:r") && !is_remote("src/http://x") && !is_remote("./x"));
    }
}
