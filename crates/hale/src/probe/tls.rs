//! TLS pieces shared by the checks that speak TLS (`http` and `grpc`): loading a `ca_file` and
//! the verifier behind their `insecure()` option. Each check builds its own rustls
//! configuration; this module only holds what would otherwise be written twice.

use std::path::Path;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;

use crate::probe::InvalidProbe;
use crate::probe::os_error;

/// Read the CA certificates of a PEM file for the check described as `check`: fails, naming
/// the check and the file, when it cannot be read or holds no usable certificate.
pub(crate) fn load_ca_file(path: &Path, check: &str) -> Result<RootCertStore, InvalidProbe> {
    let invalid =
        |what: String| InvalidProbe::new(format!("{check}: ca_file {}: {what}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| invalid(pem_error_text(&err)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(pem_error_text(&err)))?;
    if certs.is_empty() {
        return Err(invalid("no certificate in the file".to_owned()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|err| invalid(format!("unusable certificate: {err}")))?;
    }
    Ok(roots)
}

/// A PEM reading error in one line; I/O errors in the words the other checks use.
fn pem_error_text(err: &rustls::pki_types::pem::Error) -> String {
    match err {
        rustls::pki_types::pem::Error::Io(io_err) => os_error::text(io_err),
        other => other.to_string(),
    }
}

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// What `insecure()` installs: accepts every certificate, but still checks that the handshake
/// is signed by the key in the certificate presented, as the TLS protocol requires.
#[derive(Debug)]
pub(crate) struct AcceptAnyCertificate {
    /// The provider's signature algorithms, used for the handshake signatures.
    pub(crate) algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
