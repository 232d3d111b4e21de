//! Talking to Duo: request signing (pure), Duo's retry rules (pure) and the HTTP client.

pub mod client;
pub mod clock;
pub mod error;
pub mod proxy;
pub mod retry;
pub mod sign;

pub use client::{Call, DuoClient};
pub use clock::DuoClock;
pub use error::DuoError;
pub use proxy::{ProxyRoute, ProxySetting};
pub use retry::RetryPolicy;
