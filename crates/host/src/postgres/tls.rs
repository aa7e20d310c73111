//! TLS to PostgreSQL. libpq's `sslmode` and `sslrootcert` are read here because
//! tokio-postgres knows only `disable`, `prefer` and `require`: the connection string
//! tokio-postgres parses has them taken out, and [`PgTls`] does the handshake with the
//! component's roots.
//!
//! As in Spin, every mode that uses TLS checks the server's certificate (webpki roots,
//! the component's `[[client_tls]]` roots for the host, or the roots given to
//! `set-ca-root`); `verify-ca` checks the chain but not the name.

use crate::ComponentCapabilities;
use futures::future::BoxFuture;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, TlsConnect};
use wisp_outbound::{ClientTls, ServiceTlsError, ServiceTlsStream, Verify};

/// What the TLS options of a connection string ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TlsOptions {
    /// What tokio-postgres does: no TLS, TLS if the server offers it, or TLS or fail.
    pub mode: SslMode,
    /// How much of the certificate is checked.
    pub verify: Verify,
}

/// Splits libpq's TLS options off `address` (URL or key-value form): the rest, for
/// tokio-postgres, and what they ask for. Options naming files on the host are refused:
/// a component may not choose what the host reads.
pub(super) fn take_tls_options(address: &str) -> Result<(String, TlsOptions), String> {
    let mut options = TlsOptions {
        mode: SslMode::Prefer,
        verify: Verify::Full,
    };
    let mut apply = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            "sslmode" => {
                (options.mode, options.verify) = match value {
                    "disable" => (SslMode::Disable, Verify::Full),
                    // libpq's `allow` tries plain TCP first; TLS when offered is stricter.
                    "allow" | "prefer" => (SslMode::Prefer, Verify::Full),
                    "require" | "verify-full" => (SslMode::Require, Verify::Full),
                    "verify-ca" => (SslMode::Require, Verify::ChainOnly),
                    other => {
                        return Err(format!(
                            "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                        ));
                    }
                };
                Ok(true)
            }
            // The webpki roots are what `system` means here, and the default.
            "sslrootcert" if value == "system" => Ok(true),
            "sslrootcert" | "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => {
                Err(format!(
                    "{key} names a file on the host, which a component may not choose; trust a private CA with set-ca-root or with a [[client_tls]] entry in the runtime config (ca_roots_file, and cert_chain_file/private_key_file for a client certificate)"
                ))
            }
            _ => Ok(false),
        }
    };
    let rest = if address.starts_with("postgres://") || address.starts_with("postgresql://") {
        let Some((base, query)) = address.split_once('?') else {
            return Ok((address.to_owned(), options));
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !apply(key, value)? {
                kept.push(pair);
            }
        }
        match kept.is_empty() {
            true => base.to_owned(),
            false => format!("{base}?{}", kept.join("&")),
        }
    } else {
        let mut kept = Vec::new();
        for (key, value, raw) in key_values(address)? {
            if !apply(key, &value)? {
                kept.push(raw);
            }
        }
        kept.join(" ")
    };
    Ok((rest, options))
}

/// The `key=value` pairs of libpq's key-value form, with each value unquoted and the
/// pair as written.
fn key_values(address: &str) -> Result<Vec<(&str, String, &str)>, String> {
    let mut pairs = Vec::new();
    let mut rest = address.trim_start();
    while !rest.is_empty() {
        let start = rest;
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        rest = rest[key_end..].trim_start();
        rest = rest
            .strip_prefix('=')
            .ok_or_else(|| format!("expected `=` after {key:?}"))?
            .trim_start();
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let quoted = rest.starts_with('\'');
        if quoted {
            chars.next();
        }
        let mut end = rest.len();
        let mut closed = !quoted;
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => value.extend(chars.next().map(|(_, c)| c)),
                '\'' if quoted => {
                    end = at + 1;
                    closed = true;
                    break;
                }
                c if c.is_whitespace() && !quoted => {
                    end = at;
                    break;
                }
                c => value.push(c),
            }
        }
        if !closed {
            return Err(format!("the value of {key:?} has no closing quote"));
        }
        let consumed = start.len() - rest.len() + end;
        pairs.push((key, value, &start[..consumed]));
        rest = rest[end..].trim_start();
    }
    Ok(pairs)
}

/// The handshake tokio-postgres runs after the server agrees to TLS.
#[derive(Clone)]
pub(super) struct PgTls {
    pub caps: Arc<ComponentCapabilities>,
    pub host: String,
    pub verify: Verify,
    /// Roots from `set-ca-root` (with the webpki roots), instead of the component's.
    pub roots: Option<ClientTls>,
}

impl TlsConnect<TcpStream> for PgTls {
    type Stream = PgTlsStream;
    type Error = ServiceTlsError;
    type Future = BoxFuture<'static, Result<PgTlsStream, ServiceTlsError>>;

    fn connect(self, tcp: TcpStream) -> Self::Future {
        Box::pin(async move {
            let stream = match &self.roots {
                Some(roots) => {
                    let connected =
                        wisp_outbound::connect_service(Some(roots), &self.host, self.verify, tcp)
                            .await;
                    if let Err(e) = &connected {
                        let id = self.caps.id();
                        tracing::warn!(component = %id, host = %self.host, "component `{id}`: {e}");
                    }
                    connected
                }
                None => self.caps.connect_tls(&self.host, self.verify, tcp).await,
            };
            stream.map(PgTlsStream)
        })
    }
}

/// A TLS connection to PostgreSQL.
pub(super) struct PgTlsStream(ServiceTlsStream);

impl tokio_postgres::tls::TlsStream for PgTlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM then runs without channel binding, which servers accept unless the client
        // asks for it.
        ChannelBinding::none()
    }
}

impl AsyncRead for PgTlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PgTlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(address: &str) -> (String, SslMode, Verify) {
        let (rest, options) = take_tls_options(address).unwrap();
        (rest, options.mode, options.verify)
    }

    #[test]
    fn url_options_are_taken_out() {
        assert_eq!(
            take("postgres://u:p@h:5432/d?sslmode=verify-ca&application_name=x"),
            (
                "postgres://u:p@h:5432/d?application_name=x".to_owned(),
                SslMode::Require,
                Verify::ChainOnly
            )
        );
        assert_eq!(
            take("postgresql://h/d?sslmode=disable&sslrootcert=system"),
            (
                "postgresql://h/d".to_owned(),
                SslMode::Disable,
                Verify::Full
            )
        );
        assert_eq!(
            take("postgres://h/d"),
            ("postgres://h/d".to_owned(), SslMode::Prefer, Verify::Full)
        );
    }

    #[test]
    fn key_value_options_are_taken_out() {
        assert_eq!(
            take("host=h sslmode = verify-full password='a b\\'c' dbname=d"),
            (
                "host=h password='a b\\'c' dbname=d".to_owned(),
                SslMode::Require,
                Verify::Full
            )
        );
        assert_eq!(
            take("host=h sslmode='require'"),
            ("host=h".to_owned(), SslMode::Require, Verify::Full)
        );
    }

    #[test]
    fn host_files_and_unknown_modes_are_refused() {
        for address in [
            "host=h sslrootcert=/etc/passwd",
            "postgres://h/d?sslkey=/root/key",
            "host=h sslmode=maybe",
            "host=h sslmode='open",
        ] {
            assert!(take_tls_options(address).is_err(), "{address}");
        }
        assert!(
            take_tls_options("host=h sslcert=x")
                .unwrap_err()
                .contains("[[client_tls]]")
        );
    }
}
