//! The resource a request's Uri-Path options address: `/.well-known/core`
//! or a readings resource `/<root>/<device>[/<name>]`. Pure. The device and
//! the name become levels of the event's subject and reading, so both
//! follow the one id rule ([`device_id`]): a `/` inside a segment (sent
//! percent-encoded as `%2F`) cannot change the subject's shape.

use sluice_adapter_common::device_id::{self, BadId};

/// Name of the reading a plain-text payload gives without a name segment.
pub const DEFAULT_NAME: &str = "value";

/// What a request addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    /// `/.well-known/core` (RFC 6690).
    WellKnownCore,
    /// A readings resource.
    Readings {
        /// The device id (second segment).
        device: String,
        /// The reading name (third segment), [`DEFAULT_NAME`] without one.
        name: String,
    },
}

/// Why the path addresses nothing the server takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// No such resource: `4.04`.
    NotFound,
    /// The device segment breaks the id rule (`None`: not UTF-8): `4.00`.
    BadDevice(Option<BadId>),
    /// The name segment breaks the id rule (`None`: not UTF-8): `4.00`.
    BadName(Option<BadId>),
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathError::NotFound => f.write_str("no such resource"),
            PathError::BadDevice(Some(e)) => write!(f, "device id {e}"),
            PathError::BadDevice(None) => f.write_str("device id is not UTF-8"),
            PathError::BadName(Some(e)) => write!(f, "reading name {e}"),
            PathError::BadName(None) => f.write_str("reading name is not UTF-8"),
        }
    }
}

/// The resource the `segments` (one per Uri-Path option) address, with
/// readings resources under `root`.
pub fn resource<S: AsRef<[u8]>>(segments: &[S], root: &str) -> Result<Resource, PathError> {
    let segments: Vec<&[u8]> = segments.iter().map(AsRef::as_ref).collect();
    match segments.as_slice() {
        [a, b] if *a == b".well-known" && *b == b"core" => Ok(Resource::WellKnownCore),
        [r, device] if *r == root.as_bytes() => Ok(Resource::Readings {
            device: id(device).map_err(PathError::BadDevice)?,
            name: DEFAULT_NAME.to_owned(),
        }),
        [r, device, name] if *r == root.as_bytes() => Ok(Resource::Readings {
            device: id(device).map_err(PathError::BadDevice)?,
            name: id(name).map_err(PathError::BadName)?,
        }),
        _ => Err(PathError::NotFound),
    }
}

fn id(segment: &[u8]) -> Result<String, Option<BadId>> {
    let text = std::str::from_utf8(segment).map_err(|_| None)?;
    device_id::check(text).map_err(Some)?;
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readings(device: &str, name: &str) -> Result<Resource, PathError> {
        Ok(Resource::Readings {
            device: device.to_owned(),
            name: name.to_owned(),
        })
    }

    #[test]
    fn rfc7252_6_4_segments_to_resources() {
        type Case<'a> = (&'a [&'a [u8]], Result<Resource, PathError>);
        let cases: &[Case] = &[
            (&[b"r", b"t1"], readings("t1", "value")),
            (&[b"r", b"t1", b"level"], readings("t1", "level")),
            (&[b".well-known", b"core"], Ok(Resource::WellKnownCore)),
            (&[], Err(PathError::NotFound)),
            (&[b"r"], Err(PathError::NotFound)),
            (&[b"x", b"t1"], Err(PathError::NotFound)),
            (&[b"r", b"t1", b"a", b"b"], Err(PathError::NotFound)),
            // `/r/a%2Fb`: one segment holding a slash.
            (
                &[b"r", b"a/b"],
                Err(PathError::BadDevice(Some(BadId::Slash))),
            ),
            (
                &[b"r", b"t1", b"a/b"],
                Err(PathError::BadName(Some(BadId::Slash))),
            ),
            (&[b"r", b""], Err(PathError::BadDevice(Some(BadId::Empty)))),
            (
                &[b"r", b"t1", b""],
                Err(PathError::BadName(Some(BadId::Empty))),
            ),
            (
                &[b"r", b"+"],
                Err(PathError::BadDevice(Some(BadId::Wildcard))),
            ),
            (
                &[b"r", b"t1", b"#"],
                Err(PathError::BadName(Some(BadId::Wildcard))),
            ),
            (
                &[b"r", b"a\nb"],
                Err(PathError::BadDevice(Some(BadId::Control))),
            ),
            (&[b"r", &[0xff, 0xfe]], Err(PathError::BadDevice(None))),
            (&[b"r", b"t1", &[0xc3]], Err(PathError::BadName(None))),
            (
                &[b"r", &[b'x'; 65]],
                Err(PathError::BadDevice(Some(BadId::TooLong))),
            ),
        ];
        for (segments, expected) in cases {
            assert_eq!(resource(segments, "r"), *expected, "{segments:?}");
        }
    }

    #[test]
    fn diagnostics() {
        assert_eq!(
            PathError::BadDevice(Some(BadId::Slash)).to_string(),
            "device id contains `/`"
        );
        assert_eq!(
            PathError::BadName(None).to_string(),
            "reading name is not UTF-8"
        );
    }
}
