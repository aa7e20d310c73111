//! TLS to the services a component talks to (PostgreSQL, Redis, MySQL, MQTT), as opposed
//! to outbound HTTPS ([`crate::client`]). The server's certificate is checked against the
//! webpki roots, or against the roots of the `[[client_tls]]` entry for that component and
//! host, which may also present a client certificate. Checking less needs an explicit
//! setting in the guest's address, and every such connection logs a warning.

use crate::client::ClientTls;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How much of a service's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// The chain to a trusted root and the host name: the default everywhere.
    Full,
    /// The chain to a trusted root, not the name (PostgreSQL's `verify-ca`, MySQL's
    /// `VERIFY_CA`): for servers reached by an address their certificate does not name.
    ChainOnly,
    /// Nothing but the handshake's own signatures (Redis `#insecure`, MySQL
    /// `verify_ca=false`): encrypted, but open to a man in the middle.
    Nothing,
}

/// The three ways to check a server, for one set of roots and client certificate.
#[derive(Clone)]
pub(crate) struct ServiceConfigs {
    full: TlsConnector,
    chain_only: TlsConnector,
    nothing: TlsConnector,
    /// For configs made per connection ([`config_for_name`]).
    webpki: Arc<WebPkiServerVerifier>,
    client_cert: Option<Arc<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>>,
}

impl ServiceConfigs {
    pub(crate) fn new(
        roots: RootCertStore,
        client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<ServiceConfigs, String> {
        let provider = provider();
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("the CA certificates cannot be used: {e}"))?;
        let client_cert = client_cert.map(Arc::new);
        let connector = |verifier: Arc<dyn ServerCertVerifier>| {
            client_config(verifier, client_cert.as_deref())
                .map(|config| TlsConnector::from(Arc::new(config)))
        };
        Ok(ServiceConfigs {
            full: connector(webpki.clone())?,
            chain_only: connector(Arc::new(Checked {
                webpki: webpki.clone(),
                check: Check::ChainOnly,
            }))?,
            nothing: connector(Arc::new(Checked {
                webpki: webpki.clone(),
                check: Check::Nothing,
            }))?,
            webpki,
            client_cert,
        })
    }

    fn connector(&self, verify: Verify) -> &TlsConnector {
        match verify {
            Verify::Full => &self.full,
            Verify::ChainOnly => &self.chain_only,
            Verify::Nothing => &self.nothing,
        }
    }
}

fn client_config(
    verifier: Arc<dyn ServerCertVerifier>,
    client_cert: Option<&(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls's default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match client_cert {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("the client certificate and key cannot be used: {e}")),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// A client configuration that checks the server's certificate for `host` (fully)
/// whatever name the connection itself uses: for a client library that dials the
/// checked address and so names an IP address in the handshake (the MQTT client). No
/// SNI is sent then, so a server that picks its certificate by SNI shows its default.
pub fn config_for_name(
    tls: Option<&ClientTls>,
    host: &str,
) -> Result<Arc<rustls::ClientConfig>, ServiceTlsError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::from(ip),
        Err(_) => ServerName::try_from(host.trim_end_matches('.').to_owned()).map_err(|e| {
            ServiceTlsError::Name {
                host: host.to_owned(),
                reason: e.to_string(),
            }
        })?,
    };
    let configs = match tls {
        Some(tls) => &tls.service,
        None => default_configs(),
    };
    let verifier = Arc::new(Checked {
        webpki: configs.webpki.clone(),
        check: Check::ForName(name),
    });
    client_config(verifier, configs.client_cert.as_deref())
        .map(Arc::new)
        .map_err(|reason| ServiceTlsError::Name {
            host: host.to_owned(),
            reason,
        })
}

fn provider() -> Arc<CryptoProvider> {
    // Explicit, so another crate enabling a different rustls backend cannot make this panic.
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The webpki roots with no client certificate: what a host without a `[[client_tls]]`
/// entry gets. Built once.
fn default_configs() -> &'static ServiceConfigs {
    static DEFAULT: OnceLock<ServiceConfigs> = OnceLock::new();
    DEFAULT.get_or_init(|| {
        let roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        ServiceConfigs::new(roots, None).expect("the webpki roots are usable")
    })
}

/// A client TLS connection to a service.
pub type ServiceTlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS handshake with a service that failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceTlsError {
    /// The host cannot be a TLS server name.
    #[error("{host:?} is not a valid TLS server name: {reason}")]
    Name {
        /// The host as the guest wrote it.
        host: String,
        /// Why rustls refused it.
        reason: String,
    },
    /// The server's certificate was refused.
    #[error(
        "TLS with {host}: {source}; if the server's certificate comes from a private CA, trust that CA with a [[client_tls]] entry (component_ids, hosts, ca_roots_file) in the runtime config"
    )]
    Certificate {
        /// The host connected to.
        host: String,
        /// What rustls said about the certificate.
        source: std::io::Error,
    },
    /// The server's certificate is trusted but names another host.
    #[error(
        "TLS with {host}: {source}; connect by a name the certificate carries (or, for PostgreSQL, check only the chain with sslmode=verify-ca)"
    )]
    WrongName {
        /// The host connected to.
        host: String,
        /// What rustls said about the certificate.
        source: std::io::Error,
    },
    /// Any other handshake failure (the server is not speaking TLS, an alert, a reset).
    #[error("TLS with {host}: {source}")]
    Handshake {
        /// The host connected to.
        host: String,
        /// The failure.
        source: std::io::Error,
    },
}

/// Runs a TLS handshake as a client over `tcp`, naming `host` (SNI and, with
/// [`Verify::Full`], the name the certificate must carry). `tls` is the component's
/// `[[client_tls]]` entry for this host, if any.
pub async fn connect_service(
    tls: Option<&ClientTls>,
    host: &str,
    verify: Verify,
    tcp: TcpStream,
) -> Result<ServiceTlsStream, ServiceTlsError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let server_name = match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::from(ip),
        Err(_) => ServerName::try_from(host.trim_end_matches('.').to_owned()).map_err(|e| {
            ServiceTlsError::Name {
                host: host.to_owned(),
                reason: e.to_string(),
            }
        })?,
    };
    let configs = match tls {
        Some(tls) => &tls.service,
        None => default_configs(),
    };
    if verify == Verify::Nothing {
        tracing::warn!(
            "TLS with {host} does not check the server's certificate, as the address asks: the connection is encrypted but open to a man in the middle"
        );
    }
    configs
        .connector(verify)
        .connect(server_name, tcp)
        .await
        .map_err(|source| {
            let host = host.to_owned();
            match source
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => ServiceTlsError::WrongName { host, source },
                Some(rustls::Error::InvalidCertificate(_)) => {
                    ServiceTlsError::Certificate { host, source }
                }
                _ => ServiceTlsError::Handshake { host, source },
            }
        })
}

/// What [`Checked`] does with the server's certificate; the handshake's own signatures are
/// always checked.
#[derive(Debug)]
enum Check {
    /// webpki's checks, for this name rather than the one the connection was made with.
    ForName(ServerName<'static>),
    /// The chain as webpki checks it; a certificate for another name is accepted.
    ChainOnly,
    /// Nothing.
    Nothing,
}

/// webpki's verifier with one of the [`Check`]s.
#[derive(Debug)]
struct Checked {
    webpki: Arc<WebPkiServerVerifier>,
    check: Check,
}

impl ServerCertVerifier for Checked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = match &self.check {
            Check::Nothing => return Ok(ServerCertVerified::assertion()),
            Check::ForName(name) => name,
            Check::ChainOnly => server_name,
        };
        let verified =
            self.webpki
                .verify_server_cert(end_entity, intermediates, name, ocsp_response, now);
        match (&self.check, verified) {
            // webpki checks the chain before the name, so a name error means the chain held.
            (
                Check::ChainOnly,
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )),
            ) => Ok(ServerCertVerified::assertion()),
            (_, verified) => verified,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
