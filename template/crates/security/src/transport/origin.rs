//! Web origins as configuration names them: `scheme://host[:port]`, nothing after it. One parser
//! for the public origin (redirect target, certificate host) and the CORS allowlist.

/// The parts of a valid origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The host, without the brackets of an IPv6 address.
    pub host: &'a str,
}

/// Parses `scheme://host[:port]` (http or https; no path, query, fragment or user info).
pub fn parse(origin: &str) -> Option<Origin<'_>> {
    let (scheme, authority) = origin.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let host = match authority.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            match after.strip_prefix(':') {
                None if after.is_empty() => host,
                Some(port) if port.parse::<u16>().is_ok() => host,
                _ => return None,
            }
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => host,
            Some(_) => return None,
            None => authority,
        },
    };
    (!host.is_empty()).then_some(Origin { scheme, host })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_split_and_anything_more_is_refused() {
        assert_eq!(
            parse("https://[::1]:8443"),
            Some(Origin {
                scheme: "https",
                host: "::1"
            })
        );
        assert_eq!(
            parse("http://localhost:8080"),
            Some(Origin {
                scheme: "http",
                host: "localhost"
            })
        );
        for bad in [
            "https://api.example.com/v1",
            "https://user@api.example.com",
            "ftp://api.example.com",
            "api.example.com",
            "https://api.example.com:port",
            "https://",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
