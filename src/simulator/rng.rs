//! Deterministic randomness for the simulated data, and the identifiers drawn from it: the
//! same seed gives the same dataset on every machine and crate version.

/// SplitMix64: tiny, fast, and stable across crate versions (unlike `StdRng`).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when n == 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// True with probability `pct`/100.
    pub fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Hash-combine two words.
pub fn mix(a: u64, b: u64) -> u64 {
    Rng::new(a ^ b.rotate_left(32).wrapping_mul(0xD6E8_FEB8_6659_FD93)).next_u64()
}

pub fn uuid_v4(hi: u64, lo: u64) -> u128 {
    let v = (u128::from(hi) << 64) | u128::from(lo);
    (v & !(0xF_u128 << 76) & !(0b11_u128 << 62)) | (0x4_u128 << 76) | (0b10_u128 << 62)
}

/// A hash as a uniform number in `[0, 1)`.
pub fn unit_interval(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

const KEY_ALPHABET: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A Duo-style 20-character key: `prefix` + 18 characters.
pub fn duo_key(prefix: &str, x: u64) -> String {
    let mut rng = Rng::new(x);
    let mut s = String::with_capacity(20);
    s.push_str(prefix);
    while s.len() < 20 {
        s.push(KEY_ALPHABET[rng.below(36) as usize] as char);
    }
    s
}

pub fn uuid_str(id: u128) -> String {
    uuid::Uuid::from_u128(id).hyphenated().to_string()
}
