//! The X-Ray daemon side: its address from `AWS_XRAY_DAEMON_ADDRESS`, and the UDP
//! client that sends segment documents to it.
//!
//! opentelemetry-aws' `XrayDaemonClient` always binds an IPv4 socket, so it cannot send
//! to an IPv6 daemon (`[::1]:2000` fails with "Address family not supported"), and it
//! gives up on a whole batch at the first datagram that cannot be sent. [`DaemonClient`]
//! speaks the same wire format from a socket of the daemon's own family.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::{Mutex, PoisonError};

use opentelemetry_aws::xray_exporter::{SegmentDocument, SegmentDocumentExporter};

/// The line every datagram to the daemon starts with.
const DAEMON_HEADER: &[u8] = b"{\"format\": \"json\", \"version\": 1}\n";

/// Why `AWS_XRAY_DAEMON_ADDRESS` gives no address to send to.
#[derive(Debug)]
pub(crate) enum AddressError {
    /// Not `host:port` (no port, a port that is not 0-65535, an empty host, an IPv6
    /// address without brackets, ...).
    Malformed,
    /// Well formed, but the host could not be resolved.
    Unresolved {
        /// The host as written.
        host: String,
        /// What the resolver said.
        source: io::Error,
    },
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("not host:port"),
            Self::Unresolved { host, source } => {
                write!(f, "host {host:?} could not be resolved: {source}")
            }
        }
    }
}

impl std::error::Error for AddressError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Malformed => None,
            Self::Unresolved { source, .. } => Some(source),
        }
    }
}

/// The daemon address in `value`: an IP socket address (`127.0.0.1:2000`,
/// `[::1]:2000`) or `host:port` resolved now. When a host resolves to both families the
/// first IPv4 address is taken: the daemon listens on 127.0.0.1 by default, and UDP
/// gives no error when nobody listens on the address chosen.
pub(crate) fn daemon_address(value: &str) -> Result<SocketAddr, AddressError> {
    let value = value.trim();
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = value.rsplit_once(':').ok_or(AddressError::Malformed)?;
    let port: u16 = port.parse().map_err(|_| AddressError::Malformed)?;
    let bad_char = |c: char| c == ':' || c == '[' || c == ']' || c == '/' || c.is_whitespace();
    if host.is_empty() || host.contains(bad_char) {
        return Err(AddressError::Malformed);
    }
    let unresolved = |source| AddressError::Unresolved {
        host: host.to_owned(),
        source,
    };
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(unresolved)?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| {
            unresolved(io::Error::new(
                io::ErrorKind::NotFound,
                "no addresses for this host",
            ))
        })
}

/// Sends segment documents to the daemon over UDP, one datagram each, from a socket of
/// the daemon address's family.
#[derive(Debug)]
pub(crate) struct DaemonClient {
    socket: UdpSocket,
    /// The datagram being built, reused: the daemon header, then the document.
    buf: Mutex<Vec<u8>>,
}

impl DaemonClient {
    /// A client bound to an ephemeral port of `daemon`'s family and connected to it.
    pub(crate) fn new(daemon: SocketAddr) -> io::Result<Self> {
        let local: SocketAddr = match daemon {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local)?;
        socket.set_nonblocking(true)?;
        socket.connect(daemon)?;
        Ok(Self {
            socket,
            buf: Mutex::new(DAEMON_HEADER.to_vec()),
        })
    }
}

impl SegmentDocumentExporter for DaemonClient {
    type Error = io::Error;

    /// Sends every document in `batch`; one that cannot be serialised or sent does not
    /// stop the others. The error names how many were lost and the first cause.
    async fn export_segment_documents(
        &self,
        batch: Vec<SegmentDocument<'_>>,
    ) -> Result<(), io::Error> {
        let total = batch.len();
        let mut buf = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
        let mut lost = 0;
        let mut first: Option<io::Error> = None;
        for doc in batch {
            buf.truncate(DAEMON_HEADER.len());
            let sent = serde_json::to_writer(&mut *buf, &doc)
                .map_err(io::Error::from)
                .and_then(|()| self.socket.send(&buf));
            if let Err(e) = sent {
                lost += 1;
                first.get_or_insert(e);
            }
        }
        buf.truncate(DAEMON_HEADER.len());
        match first {
            None => Ok(()),
            Some(e) => Err(io::Error::new(
                e.kind(),
                format!("{lost} of {total} segment documents not sent to the daemon: {e}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            daemon_address("127.0.0.1:2000").unwrap(),
            "127.0.0.1:2000".parse().unwrap()
        );
        assert_eq!(
            daemon_address(" [::1]:2000 ").unwrap(),
            "[::1]:2000".parse().unwrap()
        );
        assert_eq!(daemon_address("localhost:2001").unwrap().port(), 2001);
        for bad in [
            "",
            "localhost",
            "localhost:",
            "localhost:x",
            "localhost:65536",
            ":2000",
            "::1:2000",
            "udp:127.0.0.1:2000",
            "a b:2000",
        ] {
            assert!(
                matches!(daemon_address(bad), Err(AddressError::Malformed)),
                "{bad:?}"
            );
        }
        let e = daemon_address("xray-daemon.invalid:2000").unwrap_err();
        assert!(matches!(e, AddressError::Unresolved { .. }), "{e:?}");
        assert!(e.to_string().contains("could not be resolved"), "{e}");
    }
}
