//! Modbus TCP addresses.

/// Checks `host:port` (a host name, an IPv4 address or a bracketed IPv6
/// address, and a port) and splits it.
pub fn split_address(address: &str) -> Result<(&str, u16), String> {
    let bad = || format!("`{address}` is not host:port (e.g. \"192.0.2.10:502\")");
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty()
        || host.contains(['/', ' '])
        || (host.contains(':') && !address.starts_with('['))
    {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(split_address("192.0.2.10:502"), Ok(("192.0.2.10", 502)));
        assert_eq!(split_address("plc.local:1502"), Ok(("plc.local", 1502)));
        assert_eq!(split_address("[::1]:502"), Ok(("::1", 502)));
        for bad in [
            "plc",
            "plc:",
            ":502",
            "plc:0",
            "::1:502",
            "a b:1",
            "plc:70000",
        ] {
            assert!(split_address(bad).is_err(), "{bad}");
        }
    }
}
