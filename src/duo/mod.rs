//! Talking to Duo: request signing (pure) and the HTTP client with Duo's retry rules.

pub mod client;
pub mod clock;
pub mod error;
pub mod proxy;
pub mod sign;

pub use client::{Call, DuoClient, RetryPolicy};
pub use clock::DuoClock;
pub use error::DuoError;
pub use proxy::{ProxyRoute, ProxySetting};
