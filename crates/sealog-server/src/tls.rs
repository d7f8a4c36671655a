//! Loading the TLS certificate chain and key (`--tls-cert`, `--tls-key`)
//! into a rustls acceptor: TLS 1.2 and 1.3 with rustls' safe defaults,
//! the `ring` provider, ALPN `http/1.1`. Every failure names the file and
//! says what to give instead.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ServerError;
use crate::config::TlsFiles;

fn tls_error(message: String, fix: impl Into<String>) -> ServerError {
    ServerError::Tls {
        message,
        fix: fix.into(),
    }
}

fn unreadable_fix(flag: &str, e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
            format!("check the path given with {flag}")
        }
        rustls_pki_types::pem::Error::Io(io)
            if io.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            format!("let the user running the server read the file given with {flag}")
        }
        _ => format!("give {flag} a PEM file"),
    }
}

pub(crate) fn load_tls(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, ServerError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| {
            tls_error(
                format!(
                    "cannot read the certificate `{}`: {e}",
                    files.cert.display()
                ),
                unreadable_fix("--tls-cert", &e),
            )
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            tls_error(
                format!(
                    "the certificate file `{}` is not PEM: {e}",
                    files.cert.display()
                ),
                "give --tls-cert the certificate chain in PEM (`-----BEGIN CERTIFICATE-----` \
                 blocks, leaf first); convert DER with `openssl x509 -inform der -in cert.der \
                 -out cert.pem`",
            )
        })?;
    if certs.is_empty() {
        return Err(tls_error(
            format!(
                "the certificate file `{}` holds no certificate",
                files.cert.display()
            ),
            "give --tls-cert the file with the `-----BEGIN CERTIFICATE-----` blocks (a key \
             file goes to --tls-key)",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        let fix = match &e {
            rustls_pki_types::pem::Error::NoItemsFound => "give --tls-key the private key in \
                 PEM (`-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`); \
                 an encrypted key must be decrypted first (`openssl pkey -in key.pem -out \
                 plain.pem`)"
                .to_owned(),
            other => unreadable_fix("--tls-key", other),
        };
        tls_error(
            format!(
                "cannot read a private key from `{}`: {e}",
                files.key.display()
            ),
            fix,
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            tls_error(
                e.to_string(),
                "this build's TLS library offers no protocol version: report it",
            )
        })?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            tls_error(
                format!(
                    "the certificate `{}` and the key `{}` do not make a usable pair: {e}",
                    files.cert.display(),
                    files.key.display()
                ),
                "give --tls-key the key of the certificate's leaf (compare `openssl x509 \
                 -noout -pubkey -in CERT` with `openssl pkey -pubout -in KEY`)",
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
