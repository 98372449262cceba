//! The one seeded random generator of the crate (splitmix64): the workload generator, the
//! simulated storage, the simulation and the tests draw from it, so a seed names one run.

/// A small deterministic generator (splitmix64): not for anything that needs secrecy.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    #[cfg(feature = "testing")]
    /// A generator for `seed` mixed with `salt`, so that users of one seed draw independent
    /// streams.
    pub fn salted(seed: u64, salt: u64) -> Self {
        Rng(seed ^ salt.rotate_left(17).wrapping_mul(0xD6E8_FEB8_6659_FD93))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    #[cfg(feature = "testing")]
    /// True with probability `p` (never when `p` is 0).
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_names_one_stream_and_salts_separate_streams() {
        let draw = |mut rng: Rng| (0..4).map(|_| rng.next_u64()).collect::<Vec<_>>();
        assert_eq!(draw(Rng::new(7)), draw(Rng::new(7)));
        assert_ne!(draw(Rng::new(7)), draw(Rng::new(8)));
        assert_ne!(draw(Rng::salted(7, 1)), draw(Rng::salted(7, 2)));
        let mut rng = Rng::new(1);
        assert!((0..1000).all(|_| rng.below(10) < 10 && rng.unit() < 1.0));
        assert_eq!(rng.below(0), 0);
    }
}
