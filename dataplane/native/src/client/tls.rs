//! TLS to a backend: rustls (ring provider) with ALPN `h2`.
//!
//! Roots come from `ca_file`/`ca_pem`, plus the system bundle when
//! `include_system_ca_certs_pool` is set or when no CA is given (gRPC's default).
//! `cert`/`key` make it mTLS. Versions are pinned to 1.2 and/or 1.3 (rustls has no
//! older ones). `insecure_skip_verify` accepts any server certificate (still encrypted).
//! Files are read when [`TlsSettings::client_config`] is called: the channel calls it
//! for every new connection when `reload_interval` is set, so rotated files are used.

use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// PEM given inline or as a file path.
#[derive(Clone, Debug, Default)]
pub enum Pem {
    #[default]
    None,
    Inline(Vec<u8>),
    File(String),
}

impl Pem {
    fn read(&self) -> Result<Option<Vec<u8>>, String> {
        match self {
            Pem::None => Ok(None),
            Pem::Inline(b) => Ok(Some(b.clone())),
            Pem::File(path) => std::fs::read(path)
                .map(Some)
                .map_err(|e| format!("cannot read {path}: {e}")),
        }
    }
}

/// The `tls` block of `protocol.otlp` (without `insecure`, which means no TLS at all).
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    pub ca: Pem,
    pub cert: Pem,
    pub key: Pem,
    pub include_system_ca_certs_pool: bool,
    /// Candidate system CA bundles; the first that can be read is used.
    pub system_ca_files: Vec<String>,
    pub server_name_override: Option<String>,
    pub insecure_skip_verify: bool,
    /// "1.2" or "1.3"; "" for no bound.
    pub min_version: String,
    pub max_version: String,
}

impl TlsSettings {
    /// A rustls client configuration, reading the files now.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions = self.versions()?;
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| format!("TLS versions: {e}"))?;
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        } else {
            builder.with_root_certificates(self.roots()?)
        };
        let mut config = match (self.cert.read()?, self.key.read()?) {
            (Some(cert), Some(key)) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("client certificate: {e}"))?;
                if chain.is_empty() {
                    return Err("client certificate: no certificate in the PEM".into());
                }
                let key =
                    PrivateKeyDer::from_pem_slice(&key).map_err(|e| format!("client key: {e}"))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client certificate and key: {e}"))?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// The name the server's certificate must carry: `server_name_override`, else `host`.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        let name = self.server_name_override.as_deref().unwrap_or(host);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(name.to_string()).map_err(|e| format!("server name {name:?}: {e}"))
    }

    fn versions(&self) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
        let rank = |v: &str, default: u8| match v {
            "" => Ok(default),
            "1.2" => Ok(2),
            "1.3" => Ok(3),
            other => Err(format!("TLS {other} is not supported (1.2 or 1.3)")),
        };
        let (lo, hi) = (rank(&self.min_version, 2)?, rank(&self.max_version, 3)?);
        let mut out = Vec::new();
        if lo <= 2 && hi >= 2 {
            out.push(&rustls::version::TLS12);
        }
        if hi >= 3 {
            out.push(&rustls::version::TLS13);
        }
        if out.is_empty() {
            return Err("min_version is above max_version".into());
        }
        Ok(out)
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let mut store = RootCertStore::empty();
        let ca = self.ca.read()?;
        if let Some(pem) = &ca {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("CA certificates: {e}"))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err("CA certificates: no usable certificate in the PEM".into());
            }
        }
        if ca.is_none() || self.include_system_ca_certs_pool {
            for path in &self.system_ca_files {
                if let Ok(pem) = std::fs::read(path) {
                    let certs = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok);
                    store.add_parsable_certificates(certs);
                    break;
                }
            }
        }
        Ok(store)
    }
}

/// `insecure_skip_verify: true`: any certificate is accepted, signatures are still checked.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_min_and_max() {
        let mut s = TlsSettings::default();
        assert_eq!(s.versions().unwrap().len(), 2);
        s.min_version = "1.3".into();
        assert_eq!(s.versions().unwrap().len(), 1);
        s.max_version = "1.2".into();
        assert!(s.versions().is_err());
        s.min_version = "1.1".into();
        assert!(s.versions().is_err());
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        let s = TlsSettings {
            ca: Pem::Inline(b"not a certificate".to_vec()),
            ..TlsSettings::default()
        };
        assert!(s.client_config().unwrap_err().contains("CA certificates"));
        let s = TlsSettings {
            ca: Pem::File("/nonexistent/ca.pem".into()),
            ..TlsSettings::default()
        };
        assert!(s
            .client_config()
            .unwrap_err()
            .contains("/nonexistent/ca.pem"));
    }
}
