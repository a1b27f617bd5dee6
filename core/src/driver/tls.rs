//! TLS for the native drivers (feature `tls`): rustls with the ring provider, configured once
//! per client from [`crate::config::Tls`]: the CA file (or the system's trust store), an
//! optional client certificate, the name certificates must carry. Both drivers wrap their TCP
//! socket in it before the connection's pipeline starts; the handshake counts against the
//! connect timeout. rustls's errors become [`Error::Tls`] with a [`TlsProblem`] that says
//! what to do.

use crate::config::Tls;
use crate::error::{Error, TlsProblem};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};
use std::sync::Arc;

/// A client's TLS configuration, built once and shared by every connection.
#[derive(Clone)]
pub(crate) struct TlsContext {
    pub config: Arc<ClientConfig>,
    server_name: Option<String>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn config_error(what: &str, file: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("{what} {file:?}: {e}"))
}

impl TlsContext {
    /// Read the files `t` names and build the configuration. Missing or unreadable files,
    /// files without PEM certificates or keys, and a key that does not match its certificate
    /// are [`Error::Config`].
    pub fn new(t: &Tls) -> Result<TlsContext, Error> {
        let mut roots = RootCertStore::empty();
        match &t.ca_file {
            Some(file) => {
                let certs = CertificateDer::pem_file_iter(file)
                    .map_err(|e| config_error("tls_ca: cannot read", file, e))?;
                for cert in certs {
                    let cert = cert.map_err(|e| config_error("tls_ca: bad PEM in", file, e))?;
                    roots
                        .add(cert)
                        .map_err(|e| config_error("tls_ca: bad certificate in", file, e))?;
                }
                if roots.is_empty() {
                    return Err(config_error("tls_ca: no certificate in", file, "empty"));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(Error::Config(
                        "tls: the system's trust store has no certificates; set tls_ca to the CA file that signed the servers' certificates".into(),
                    ));
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("tls: {e}")))?
            .with_root_certificates(roots);
        let config = match (&t.cert_file, &t.key_file) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| config_error("tls_cert: cannot read", cert, e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| config_error("tls_cert: bad PEM in", cert, e))?;
                if chain.is_empty() {
                    return Err(config_error("tls_cert: no certificate in", cert, "empty"));
                }
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| config_error("tls_key: no private key in", key, e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| Error::Config(format!("tls_cert/tls_key: {e}")))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(TlsContext {
            config: Arc::new(config),
            server_name: t.server_name.clone(),
        })
    }

    /// The name `host`'s certificate must carry: the configured override, else the host (an
    /// IP address is checked as one).
    pub fn name_for(&self, server: &str, host: &str) -> Result<ServerName<'static>, Error> {
        let name = self.server_name.as_deref().unwrap_or(host);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(name.to_string()).map_err(|_| {
            Error::tls(
                server,
                TlsProblem::HostnameMismatch,
                format_args!("{name:?} is not a DNS name or IP address a certificate can carry"),
            )
        })
    }
}

/// What went wrong, in the words a user can act on.
pub(crate) fn error(server: &str, e: &rustls::Error) -> Error {
    use CertificateError as C;
    let problem = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::NotValidForName | C::NotValidForNameContext { .. } => TlsProblem::HostnameMismatch,
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => TlsProblem::Expired,
            _ => TlsProblem::UntrustedCertificate,
        },
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied,
        ) => TlsProblem::ClientCertificateRejected,
        rustls::Error::InvalidMessage(_) => TlsProblem::ServerNotTls,
        _ => TlsProblem::Handshake,
    };
    Error::tls(server, problem, e)
}

/// The TLS error inside an I/O error rustls returned, if it is one.
pub(crate) fn from_io(server: &str, e: &std::io::Error) -> Option<Error> {
    let inner = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(error(server, inner))
}
