//! The sinks' TLS client configuration: [`crate::tls`], its failure as a sink error.

use tokio_rustls::rustls::ClientConfig;

use super::config::TlsFiles;

/// Nothing here gets better by trying again: permanent.
pub fn client_config(files: &TlsFiles) -> Result<ClientConfig, super::DriverError> {
    crate::tls::client_config(files)
        .map_err(|detail| super::DriverError::permanent(detail, crate::tls::FILES_FIX))
}
