//! Duo's clock: the real clock plus an offset that tests may change while the server runs.

use std::sync::atomic::{AtomicI64, Ordering};

pub struct DuoClock {
    offset_ms: AtomicI64,
}

impl DuoClock {
    pub fn new(offset_ms: i64) -> DuoClock {
        DuoClock {
            offset_ms: AtomicI64::new(offset_ms),
        }
    }

    pub fn now_ms(&self) -> i64 {
        real_now_ms().saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }

    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
    }
}

pub fn real_now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// RFC 7231 IMF-fixdate, second resolution: `Tue, 01 Dec 2026 08:47:20 GMT`.
pub fn imf_fixdate(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}
