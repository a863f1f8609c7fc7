//! How rotor trusts an HTTP target: the system's roots, one CA file, or a pinned
//! certificate (the HTTP form of a pinned SSH host key: the chain is not judged, the
//! certificate must be one of the pins, and the server must prove it holds its key).

use std::sync::Arc;

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use super::recipe::HttpTarget;
use crate::driver::contract::{Error, Host};

/// `SHA256:<base64 without padding>` of a certificate's DER form.
pub fn fingerprint(der: &[u8]) -> String {
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(der))
    )
}

/// What a handshake's certificate must be: one of the pins, or anything, kept for
/// `rotor host scan https://...` (whose operator checks it out of band before pinning).
#[derive(Debug)]
enum Accept {
    Pinned(Vec<[u8; 32]>),
    Record(std::sync::Mutex<Option<Vec<u8>>>),
}

/// Judges the certificate by `accept`; the handshake's signatures are verified as
/// always, so the server must hold the certificate's key.
#[derive(Debug)]
struct Verifier {
    accept: Accept,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.accept {
            Accept::Pinned(pins) => {
                let digest: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
                if !pins.contains(&digest) {
                    return Err(rustls::Error::General(format!(
                        "the server's certificate {} is not pinned for this resource",
                        fingerprint(end_entity.as_ref())
                    )));
                }
            }
            Accept::Record(seen) => {
                *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(end_entity.to_vec());
            }
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls configuration that judges certificates by `accept` alone.
fn config(accept: Accept) -> Result<(rustls::ClientConfig, Arc<Verifier>), Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Verifier {
        accept,
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    Ok((config, verifier))
}

/// The fingerprint of the certificate `address:port` presents in a TLS handshake (which
/// it must complete: the server proves it holds the certificate's key).
pub fn scan_certificate(
    address: &str,
    port: u16,
    timeout: std::time::Duration,
) -> Result<String, Error> {
    use std::net::ToSocketAddrs;
    let at = format!("{address}:{port}");
    let connect = |message: String| Error::Connect {
        address: at.clone(),
        message,
    };
    let (config, verifier) = config(Accept::Record(std::sync::Mutex::new(None)))?;
    let name = ServerName::try_from(address.to_string())
        .map_err(|e| Error::Config(format!("{address}: {e}")))?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| Error::Config(format!("TLS: {e}")))?;
    let socket = (address, port)
        .to_socket_addrs()
        .map_err(|e| connect(e.to_string()))?
        .next()
        .ok_or_else(|| connect("no address".into()))?;
    let mut stream = std::net::TcpStream::connect_timeout(&socket, timeout)
        .map_err(|e| connect(e.to_string()))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|_| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| connect(e.to_string()))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut stream).map_err(|e| Error::Protocol {
            address: at.clone(),
            message: format!("TLS handshake: {e}"),
        })?;
    }
    let seen = match &verifier.accept {
        Accept::Record(seen) => seen.lock().unwrap_or_else(|p| p.into_inner()).take(),
        Accept::Pinned(_) => None,
    };
    let der = seen.ok_or_else(|| Error::Protocol {
        address: at.clone(),
        message: "the server presented no certificate".into(),
    })?;
    Ok(fingerprint(&der))
}

/// A client for one target: HTTPS only, no redirects followed (credentials never go
/// elsewhere), no proxy from the environment, the resource's timeouts.
pub fn client(host: &Host, target: &HttpTarget) -> Result<reqwest::Client, Error> {
    if let Some(client) = target.client.get() {
        return Ok(client.clone());
    }
    let client = build(host, target)?;
    Ok(target.client.get_or_init(|| client).clone())
}

fn build(host: &Host, target: &HttpTarget) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder()
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(host.connect_timeout)
        .timeout(host.connect_timeout + host.io_timeout);
    if !target.pins.is_empty() {
        let (config, _) = config(Accept::Pinned(target.pins.clone()))?;
        builder = builder.use_preconfigured_tls(config);
    } else if let Some(ca) = &target.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| Error::Config(format!("cannot read CA file {}: {e}", ca.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::Config(format!("CA file {}: {e}", ca.display())))?;
        builder = builder.tls_built_in_root_certs(false);
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| Error::Config(format!("HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::http::recipe::parse_pin;

    #[test]
    fn pins_read_back_what_fingerprint_writes() {
        let fpr = fingerprint(b"certificate");
        assert_eq!(fpr.len(), "SHA256:".len() + 43);
        let digest: [u8; 32] = Sha256::digest(b"certificate").into();
        assert_eq!(parse_pin(&fpr), Some(digest));
        assert_eq!(parse_pin("SHA256:short"), None);
        assert_eq!(parse_pin("MD5:abc"), None);
    }
}
