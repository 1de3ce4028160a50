//! Who may look and who may act: the checks every request passes.
//!
//! - Actions (`POST`) need `Authorization: Bearer <token>`; a token in the query or
//!   a cookie counts for nothing. A request whose `Origin` or `Sec-Fetch-Site` says
//!   another site sent it is refused before the token is looked at.
//! - Listening on loopback, looking needs no token, but the `Host` header must name
//!   loopback (a DNS-rebinding page cannot read the view). Listening beyond
//!   loopback, looking needs the token too.

use std::fmt;
use std::net::SocketAddr;

use http::header;
use http::{Request, StatusCode};

use super::Token;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No token, or not this server's.
    Token,
    /// Sent by a page of another site.
    CrossSite,
    /// A `Host` this loopback server does not answer to.
    Host,
}

impl Refusal {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::Token => StatusCode::UNAUTHORIZED,
            Self::CrossSite => StatusCode::FORBIDDEN,
            Self::Host => StatusCode::MISDIRECTED_REQUEST,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Token => {
                "this needs the token: open the link with #token= that was printed when \
                 this view started (the page sends it in an Authorization: Bearer header)"
            }
            Self::CrossSite => "refused: the request came from another site",
            Self::Host => "refused: this server answers only to a loopback Host header",
        })
    }
}

/// The checks, for one listening address.
pub(crate) struct Access {
    token: Token,
    addr: SocketAddr,
}

impl Access {
    pub(crate) fn new(token: Token, addr: SocketAddr) -> Self {
        Self { token, addr }
    }

    fn loopback(&self) -> bool {
        self.addr.ip().is_loopback()
    }

    /// On loopback, the `Host` header must be a loopback name with this port.
    pub(crate) fn host<B>(&self, req: &Request<B>) -> Result<(), Refusal> {
        if !self.loopback() {
            return Ok(());
        }
        let port = self.addr.port();
        let mut hosts = req.headers().get_all(header::HOST).iter();
        let (Some(host), None) = (hosts.next(), hosts.next()) else {
            return Err(Refusal::Host);
        };
        let host = host.to_str().unwrap_or_default().to_ascii_lowercase();
        // Browsers leave the default port out.
        let bare = port == 80;
        let ok = ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .any(|name| host == format!("{name}:{port}") || (bare && host == *name))
            || host == self.addr.to_string();
        if ok { Ok(()) } else { Err(Refusal::Host) }
    }

    fn token_given<B>(&self, req: &Request<B>) -> bool {
        let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        // The scheme's name is case-insensitive (RFC 9110).
        let v = value.as_bytes();
        v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") && self.token.matches(&v[7..])
    }

    /// Looking: free on loopback, the token beyond it.
    pub(crate) fn view<B>(&self, req: &Request<B>) -> Result<(), Refusal> {
        if self.loopback() || self.token_given(req) {
            Ok(())
        } else {
            Err(Refusal::Token)
        }
    }

    /// Every API request: not sent by a page of another site. Browsers say so in
    /// `Sec-Fetch-Site` (on every request) and `Origin` (on most); a script or a
    /// terminal sends neither. `Origin` is compared by host and port, so the view
    /// also works behind a TLS proxy.
    pub(crate) fn same_site<B>(&self, req: &Request<B>) -> Result<(), Refusal> {
        let h = req.headers();
        if let Some(site) = h.get("sec-fetch-site")
            && !matches!(site.as_bytes(), b"same-origin" | b"none")
        {
            return Err(Refusal::CrossSite);
        }
        if let Some(origin) = h.get(header::ORIGIN) {
            let host = h
                .get(header::HOST)
                .map(http::HeaderValue::as_bytes)
                .unwrap_or_default();
            let origin = origin.as_bytes();
            let origin_host = origin
                .strip_prefix(b"http://")
                .or_else(|| origin.strip_prefix(b"https://"));
            if origin_host.is_none_or(|o| !o.eq_ignore_ascii_case(host)) {
                return Err(Refusal::CrossSite);
            }
        }
        Ok(())
    }

    /// Acting: same site, and the token.
    pub(crate) fn act<B>(&self, req: &Request<B>) -> Result<(), Refusal> {
        self.same_site(req)?;
        if self.token_given(req) {
            Ok(())
        } else {
            Err(Refusal::Token)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "0123456789abcdef0123456789abcdef";

    fn access(addr: &str) -> Access {
        Access::new(Token::new(T).unwrap(), addr.parse().unwrap())
    }

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder()
            .method("POST")
            .uri("/api/rollouts/x/rollback");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn each_refusal_for_actions() {
        let a = access("127.0.0.1:8080");
        let host = ("host", "127.0.0.1:8080");
        let bearer = format!("Bearer {T}");
        let lower = format!("bearer {T}");
        let cookie = format!("token={T}");
        type Case<'a> = (Vec<(&'a str, &'a str)>, Result<(), Refusal>);
        let cases: Vec<Case<'_>> = vec![
            (vec![host], Err(Refusal::Token)),
            (
                vec![host, ("authorization", "Bearer wrong")],
                Err(Refusal::Token),
            ),
            (vec![host, ("authorization", T)], Err(Refusal::Token)),
            (vec![host, ("cookie", &cookie)], Err(Refusal::Token)),
            (
                vec![host, ("authorization", &bearer), ("authorization", &bearer)],
                Err(Refusal::Token),
            ),
            (
                vec![
                    host,
                    ("authorization", &bearer),
                    ("origin", "http://evil.example"),
                ],
                Err(Refusal::CrossSite),
            ),
            (
                vec![
                    host,
                    ("authorization", &bearer),
                    ("sec-fetch-site", "cross-site"),
                ],
                Err(Refusal::CrossSite),
            ),
            (
                vec![
                    host,
                    ("authorization", &bearer),
                    ("sec-fetch-site", "same-site"),
                ],
                Err(Refusal::CrossSite),
            ),
            (vec![host, ("authorization", &bearer)], Ok(())),
            (
                vec![
                    host,
                    ("authorization", &bearer),
                    ("origin", "http://127.0.0.1:8080"),
                    ("sec-fetch-site", "same-origin"),
                ],
                Ok(()),
            ),
            (
                vec![
                    host,
                    ("authorization", &bearer),
                    ("origin", "https://127.0.0.1:8080"),
                ],
                Ok(()),
            ),
            (
                vec![host, ("authorization", &bearer), ("origin", "null")],
                Err(Refusal::CrossSite),
            ),
            (
                vec![
                    host,
                    ("authorization", &bearer),
                    ("origin", "http://127.0.0.1:8081"),
                ],
                Err(Refusal::CrossSite),
            ),
            (vec![host, ("authorization", &lower)], Ok(())),
        ];
        for (headers, want) in cases {
            assert_eq!(a.act(&req(&headers)), want, "{headers:?}");
        }
    }

    #[test]
    fn loopback_answers_only_loopback_hosts() {
        let a = access("127.0.0.1:8080");
        for ok in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST:8080"] {
            assert_eq!(a.host(&req(&[("host", ok)])), Ok(()), "{ok}");
        }
        for bad in ["evil.example:8080", "127.0.0.1:9999", "localhost", ""] {
            assert_eq!(a.host(&req(&[("host", bad)])), Err(Refusal::Host), "{bad}");
        }
        assert_eq!(a.view(&req(&[])), Ok(()));
        let two = req(&[("host", "127.0.0.1:8080"), ("host", "evil.example")]);
        assert_eq!(a.host(&two), Err(Refusal::Host));
        // On port 80 browsers send no port.
        let a = access("127.0.0.1:80");
        for ok in ["127.0.0.1", "localhost", "127.0.0.1:80"] {
            assert_eq!(a.host(&req(&[("host", ok)])), Ok(()), "{ok}");
        }
        assert_eq!(
            a.host(&req(&[("host", "evil.example")])),
            Err(Refusal::Host)
        );
    }

    #[test]
    fn beyond_loopback_looking_needs_the_token() {
        let a = access("0.0.0.0:8080");
        assert_eq!(a.host(&req(&[("host", "dash.internal:8080")])), Ok(()));
        assert_eq!(a.view(&req(&[])), Err(Refusal::Token));
        let bearer = format!("Bearer {T}");
        assert_eq!(a.view(&req(&[("authorization", &bearer)])), Ok(()));
    }
}
