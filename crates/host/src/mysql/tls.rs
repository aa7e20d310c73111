//! TLS to MySQL. The driver's own URL options (`require_ssl`, `verify_ca`,
//! `verify_identity`, `built_in_roots`, as Spin reads them) and MySQL's `ssl-mode`
//! (`DISABLED`, `PREFERRED`, `REQUIRED`, `VERIFY_IDENTITY`) choose whether TLS is used
//! and how much of the certificate is checked (`VERIFY_CA` is refused, see [`choose`]). The roots are the webpki ones,
//! or the component's `[[client_tls]]` entry for the host (with its client certificate).
//! The driver dials the checked address and names the host in the handshake.

use crate::ComponentCapabilities;
use base64::Engine;
use mysql_async::{ClientIdentity, Opts, SslOpts};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use wisp_outbound::Verify;

/// Whether a connection uses TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MyTls {
    /// Plain TCP.
    Off,
    /// TLS when the server offers it (MySQL's `PREFERRED`), else plain TCP.
    Prefer(Verify),
    /// TLS or no connection.
    Require(Verify),
}

/// Takes `ssl-mode` (also spelled `ssl_mode`, `sslmode`) out of a `mysql://` URL, which
/// the driver would refuse, and combines it with the driver's own TLS options.
pub(super) fn take_ssl_mode(address: &str) -> Result<(String, Option<MyTls>), String> {
    let Some((base, query)) = address.split_once('?') else {
        return Ok((address.to_owned(), None));
    };
    let mut mode = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !matches!(key, "ssl-mode" | "ssl_mode" | "sslmode") {
            kept.push(pair);
            continue;
        }
        mode = Some(
            match value.to_ascii_uppercase().replace('-', "_").as_str() {
                "DISABLED" => MyTls::Off,
                "PREFERRED" => MyTls::Prefer(Verify::Full),
                // As in Spin (whose `require_ssl` verifies), REQUIRED checks the certificate;
                // `verify_ca=false` is the explicit way to skip that.
                "REQUIRED" | "VERIFY_IDENTITY" => MyTls::Require(Verify::Full),
                "VERIFY_CA" => MyTls::Require(Verify::ChainOnly),
                _ => {
                    return Err(format!(
                        "ssl-mode={value} is not one of DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY"
                    ));
                }
            },
        );
    }
    let rest = match kept.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", kept.join("&")),
    };
    Ok((rest, mode))
}

/// What the parsed options ask for: `ssl-mode` when given, else the driver's options
/// (`require_ssl=true`, loosened by `verify_identity=false` and `verify_ca=false`).
pub(super) fn choose(opts: &Opts, ssl_mode: Option<MyTls>) -> Result<MyTls, String> {
    let driver = opts.ssl_opts().map(|ssl| {
        MyTls::Require(
            match (ssl.accept_invalid_certs(), ssl.skip_domain_validation()) {
                (true, _) => Verify::Nothing,
                (false, true) => Verify::ChainOnly,
                (false, false) => Verify::Full,
            },
        )
    });
    let chosen = match (ssl_mode, driver) {
        (Some(MyTls::Off), Some(_)) => {
            return Err(
                "ssl-mode=DISABLED contradicts require_ssl=true; give one of them".to_owned(),
            );
        }
        // The driver's finer options loosen what ssl-mode asked for.
        (Some(MyTls::Require(_) | MyTls::Prefer(_)), Some(driver)) => driver,
        (Some(mode), None) => mode,
        (None, Some(driver)) => driver,
        (None, None) => MyTls::Off,
    };
    match chosen {
        // mysql_async 0.37 skips the name check by matching "NotValidForName" in the
        // text of rustls 0.23's error, which no longer says that: it would fail anyway.
        MyTls::Require(Verify::ChainOnly) | MyTls::Prefer(Verify::ChainOnly) => Err(
            "checking the chain without the host name (ssl-mode=VERIFY_CA, verify_identity=false) is not supported for MySQL yet; connect by a name the server's certificate carries (ssl-mode=VERIFY_IDENTITY)".to_owned(),
        ),
        chosen => Ok(chosen),
    }
}

/// The driver's TLS settings for a connection to `host` (dialed by address).
pub(super) fn ssl_opts(
    caps: &ComponentCapabilities,
    host: &str,
    verify: Verify,
    parsed: Option<&SslOpts>,
) -> SslOpts {
    let no_built_in = parsed.is_some_and(SslOpts::disable_built_in_roots);
    let mut ssl = SslOpts::default().with_danger_tls_hostname_override(Some(host.to_owned()));
    ssl = match caps.client_tls_for(host).map(|tls| tls.source()) {
        Some(source) => {
            let roots = source
                .roots
                .iter()
                .map(|root| root.to_vec().into())
                .collect();
            let identity = source.client_cert.as_ref().map(|(chain, key)| {
                ClientIdentity::new(chain_pem(chain).into(), key_pem(key).into())
            });
            ssl.with_root_certs(roots)
                .with_disable_built_in_roots(no_built_in || !source.webpki_roots)
                .with_client_identity(identity)
        }
        None => ssl.with_disable_built_in_roots(no_built_in),
    };
    match verify {
        Verify::Full => ssl,
        Verify::ChainOnly => ssl.with_danger_skip_domain_validation(true),
        Verify::Nothing => {
            tracing::warn!(
                component = %caps.id(),
                "TLS with mysql host {host} does not check the server's certificate (verify_ca=false): the connection is encrypted but open to a man in the middle"
            );
            ssl.with_danger_accept_invalid_certs(true)
        }
    }
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// A certificate chain as the driver reads it (one DER certificate, or PEM).
fn chain_pem(chain: &[CertificateDer<'static>]) -> Vec<u8> {
    let pem: String = chain
        .iter()
        .map(|cert| pem_block("CERTIFICATE", cert))
        .collect();
    pem.into_bytes()
}

/// A private key as PEM with the label of its format (the driver takes DER as PKCS#1).
fn key_pem(key: &PrivateKeyDer<'static>) -> Vec<u8> {
    let label = match key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    pem_block(label, key.secret_der()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(address: &str) -> Result<MyTls, String> {
        let (rest, ssl_mode) = take_ssl_mode(address)?;
        let opts = Opts::from_url(&rest).map_err(|e| e.to_string())?;
        choose(&opts, ssl_mode)
    }

    #[test]
    fn ssl_mode_and_driver_options_choose_the_check() {
        assert_eq!(mode("mysql://u@h/d"), Ok(MyTls::Off));
        assert!(
            mode("mysql://u@h/d?ssl-mode=VERIFY_CA")
                .unwrap_err()
                .contains("VERIFY_IDENTITY")
        );
        assert_eq!(
            mode("mysql://u@h/d?sslmode=preferred"),
            Ok(MyTls::Prefer(Verify::Full))
        );
        assert_eq!(
            mode("mysql://u@h/d?require_ssl=true"),
            Ok(MyTls::Require(Verify::Full))
        );
        assert!(mode("mysql://u@h/d?require_ssl=true&verify_identity=false").is_err());
        assert_eq!(
            mode("mysql://u@h/d?ssl-mode=REQUIRED&require_ssl=true&verify_ca=false"),
            Ok(MyTls::Require(Verify::Nothing))
        );
        assert!(mode("mysql://u@h/d?ssl-mode=maybe").is_err());
        assert!(mode("mysql://u@h/d?ssl-mode=DISABLED&require_ssl=true").is_err());
    }

    #[test]
    fn the_rest_of_the_url_is_kept() {
        let (rest, _) =
            take_ssl_mode("mysql://u@h/d?ssl-mode=REQUIRED&prefer_socket=false").unwrap();
        assert_eq!(rest, "mysql://u@h/d?prefer_socket=false");
    }
}
