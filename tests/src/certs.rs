//! Certificates made at test time (rcgen) for the TLS tests: a CA, server certificates
//! signed by it (valid for `localhost` and `127.0.0.1`, for another name, expired), a client
//! certificate for mutual TLS, and an unrelated CA. Written as PEM files into a fresh
//! directory that is removed when the [`Pki`] is dropped.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// The test PKI: every file lives in [`Pki::dir`].
#[derive(Debug)]
pub struct Pki {
    /// The directory holding the files.
    pub dir: PathBuf,
    /// The CA certificate that signed every certificate below (PEM).
    pub ca: PathBuf,
    /// A CA that signed nothing here (PEM).
    pub other_ca: PathBuf,
    /// A server certificate for `localhost` and `127.0.0.1`.
    pub server: Pair,
    /// A server certificate for `memcached.example` only.
    pub wrong_name: Pair,
    /// A server certificate for `localhost` and `127.0.0.1` that expired in 2001.
    pub expired: Pair,
    /// A client certificate (for servers that verify clients).
    pub client: Pair,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write a PEM file");
    p
}

fn leaf(
    dir: &Path,
    name: &str,
    issuer: &CertifiedIssuer<'static, KeyPair>,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
    expired: bool,
) -> Pair {
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, sans[0]);
    params.extended_key_usages = vec![usage];
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("sign");
    Pair {
        cert: write(dir, &format!("{name}.crt"), &cert.pem()),
        key: write(dir, &format!("{name}.key"), &key.serialize_pem()),
    }
}

impl Pki {
    /// Make every certificate, in a new directory under the system's temp directory.
    pub fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "multiput-pki-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("create the PKI directory");
        let issuer = ca("multiput test CA");
        let other = ca("some other CA");
        let server = ExtendedKeyUsagePurpose::ServerAuth;
        let local = ["localhost", "127.0.0.1"];
        Pki {
            ca: write(&dir, "ca.crt", &issuer.pem()),
            other_ca: write(&dir, "other-ca.crt", &other.pem()),
            server: leaf(&dir, "server", &issuer, &local, server.clone(), false),
            wrong_name: leaf(
                &dir,
                "wrong-name",
                &issuer,
                &["memcached.example"],
                server.clone(),
                false,
            ),
            expired: leaf(&dir, "expired", &issuer, &local, server, true),
            client: leaf(
                &dir,
                "client",
                &issuer,
                &["multiput-client"],
                ExtendedKeyUsagePurpose::ClientAuth,
                false,
            ),
            dir,
        }
    }

    /// memcached's arguments for a TLS listener with `pair` (`-Z -o ssl_chain_cert=...`);
    /// with `verify_clients`, clients must present a certificate signed by the CA.
    pub fn memcached_args(&self, pair: &Pair, verify_clients: bool) -> Vec<String> {
        let mut opts = format!(
            "ssl_chain_cert={},ssl_key={}",
            pair.cert.display(),
            pair.key.display()
        );
        if verify_clients {
            opts.push_str(&format!(
                ",ssl_ca_cert={},ssl_verify_mode=2",
                self.ca.display()
            ));
        }
        vec!["-Z".into(), "-o".into(), opts]
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}
