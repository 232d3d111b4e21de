//! Token buckets per (ikey, account, endpoint path): the unit Duo rate-limits (duo-api.md §3.2).

use std::collections::HashMap;
use std::sync::Mutex;

use super::lock;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BucketKey {
    ikey: String,
    account: String,
    path: String,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_ms: i64,
}

impl Bucket {
    /// Refill for the time since the last call (a clock that went back refills nothing), then
    /// take one token if there is one.
    fn try_take(&mut self, now_ms: i64, capacity: f64, per_minute: u32) -> bool {
        let elapsed_ms = (now_ms - self.last_ms).max(0) as f64;
        self.tokens = (self.tokens + elapsed_ms * f64::from(per_minute) / 60_000.0).min(capacity);
        self.last_ms = self.last_ms.max(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub struct RateLimiter {
    per_minute: Option<u32>,
    capacity: f64,
    buckets: Mutex<HashMap<BucketKey, Bucket>>,
    /// 429s answered by the limiter, per path.
    refused: Mutex<HashMap<String, u64>>,
}

impl RateLimiter {
    pub fn new(per_minute: Option<u32>, burst: u32) -> RateLimiter {
        RateLimiter {
            per_minute,
            capacity: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
        }
    }

    /// May this request go ahead? A refusal is counted.
    pub fn try_acquire(&self, ikey: &str, account: &str, path: &str, now_ms: i64) -> bool {
        let Some(per_minute) = self.per_minute else {
            return true;
        };
        let key = BucketKey {
            ikey: ikey.to_string(),
            account: account.to_string(),
            path: path.to_string(),
        };
        let granted = lock(&self.buckets)
            .entry(key)
            .or_insert(Bucket {
                tokens: self.capacity,
                last_ms: now_ms,
            })
            .try_take(now_ms, self.capacity, per_minute);
        if !granted {
            *lock(&self.refused).entry(path.to_string()).or_default() += 1;
        }
        granted
    }

    /// Refusals so far, for one path or all.
    pub fn refused(&self, path: Option<&str>) -> u64 {
        let refused = lock(&self.refused);
        match path {
            Some(p) => refused.get(p).copied().unwrap_or(0),
            None => refused.values().sum(),
        }
    }
}
