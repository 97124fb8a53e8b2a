//! Test data for the checker: reproducible pseudo-random bytes (a seed replays a failure)
//! with plenty of NUL bytes, since a server that treats data as C strings is the classic
//! echo bug, and the comparison that names the first differing byte.

/// SplitMix64: tiny, fast, good enough to make payloads no server could echo by accident.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`; the same seed gives the same stream.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// `len` random bytes, about one in eight of them NUL.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            let w = self.next_u64();
            for b in w.to_le_bytes() {
                v.push(if b < 32 { 0 } else { b });
            }
        }
        v.truncate(len);
        v
    }
}

/// `None` if `got` equals `want[offset..offset + got.len()]`, else a sentence naming the
/// first differing byte (offset counted from the start of the whole stream).
pub fn first_mismatch(want: &[u8], offset: usize, got: &[u8]) -> Option<String> {
    let expected = want.get(offset..offset + got.len());
    match expected {
        None => Some(format!(
            "{} bytes came back, {} more than were sent",
            offset + got.len(),
            offset + got.len() - want.len()
        )),
        Some(exp) => exp.iter().zip(got).position(|(a, b)| a != b).map(|i| {
            format!(
                "byte {} differs: sent {:#04x} got {:#04x}",
                offset + i,
                exp[i],
                got[i]
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_different_seed_different_bytes() {
        assert_eq!(Rng::new(7).bytes(1000), Rng::new(7).bytes(1000));
        assert_ne!(Rng::new(7).bytes(1000), Rng::new(8).bytes(1000));
        let b = Rng::new(1).bytes(100_000);
        let nuls = b.iter().filter(|&&x| x == 0).count();
        assert!(nuls > 5_000 && nuls < 30_000, "{nuls} NULs");
    }

    #[test]
    fn range_stays_in_bounds() {
        let mut r = Rng::new(3);
        for _ in 0..10_000 {
            let x = r.range(1, 64);
            assert!((1..=64).contains(&x));
        }
    }

    #[test]
    fn mismatch_names_the_stream_offset_and_both_bytes() {
        let want = [1u8, 2, 3, 4, 5];
        assert_eq!(first_mismatch(&want, 2, &[3, 4]), None);
        assert_eq!(
            first_mismatch(&want, 2, &[3, 9]).as_deref(),
            Some("byte 3 differs: sent 0x04 got 0x09")
        );
        assert_eq!(
            first_mismatch(&want, 4, &[5, 6]).as_deref(),
            Some("6 bytes came back, 1 more than were sent")
        );
    }
}
