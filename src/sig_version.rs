//! The Duo signature schemes, as a leaf type: `config` names the one an integration uses and
//! `duo::sign` implements them, without `config` depending on `duo`.

/// The signature schemes this project speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigVersion {
    /// Canonical v2 string, HMAC-SHA1 (40 hex characters); the classic documented scheme.
    V2Sha1,
    /// Canonical v2 string, HMAC-SHA512.
    V2Sha512,
    /// Canonical v5 string (adds body and `X-Duo-*` header hashes), HMAC-SHA512.
    V5,
}
