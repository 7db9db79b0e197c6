//! Key choosers: uniform and Zipfian ranks over `0..n`.
//!
//! The Zipfian generator is the one YCSB uses (Gray et al., "Quickly
//! Generating Billion-Record Synthetic Databases", SIGMOD 1994): after an
//! O(n) set-up (the generalised harmonic number `zeta(n, theta)`), each
//! sample is O(1), so a benchmark thread can draw millions of keys per
//! second without a table of n cumulative weights.
//!
//! Every draw takes the caller's seeded [`Rng`], so a run is reproducible
//! from its `--seed`, as everywhere else in Synod.

use synod::rng::Rng;

/// A uniform `f64` in `[0, 1)` from the top 53 bits of one draw.
pub fn unit_f64(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Zipfian ranks over `0..n`: rank `i` is drawn with probability
/// proportional to `1 / (i + 1)^theta`, so rank 0 is the hottest.
///
/// Cheap to clone (a handful of constants), so the O(n) set-up runs once
/// and every client session gets its own copy.
#[derive(Clone, Debug)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zeta_n: f64,
    eta: f64,
    /// `1 + 0.5^theta`: the cumulative weight of ranks 0 and 1, over 1.
    two_ranks: f64,
}

/// `sum_{i=1..=n} 1 / i^theta`.
fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl Zipfian {
    /// A generator over `0..n` with skew `theta` (YCSB's default is 0.99).
    ///
    /// `theta` must be in `(0, 1)`: the closed form divides by `1 - theta`,
    /// and `theta = 0` is just uniform (use [`KeyDist::Uniform`]).
    pub fn new(n: u64, theta: f64) -> Result<Zipfian, String> {
        if n == 0 {
            return Err("zipfian needs at least one key".to_string());
        }
        if !(theta > 0.0 && theta < 1.0) {
            return Err(format!("zipf theta must be in (0, 1), not {theta}"));
        }
        let zeta_n = zeta(n, theta);
        let zeta_2 = zeta(2.min(n), theta);
        // With n <= 2 the first two branches of `sample` cover everything
        // and eta is never used (its formula would divide by zero).
        let eta = if n > 2 {
            (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n)
        } else {
            0.0
        };
        Ok(Zipfian {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta_n,
            eta,
            two_ranks: 1.0 + 0.5f64.powf(theta),
        })
    }

    /// Number of ranks.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// The skew parameter.
    pub fn theta(&self) -> f64 {
        self.theta
    }

    /// Probability of rank 0, the hottest key (`1 / zeta(n, theta)`).
    pub fn p_hottest(&self) -> f64 {
        1.0 / self.zeta_n
    }

    /// One rank in `0..n`.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = unit_f64(rng);
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < self.two_ranks || self.n <= 2 {
            return 1.min(self.n - 1);
        }
        let rank = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        // Floating point can land exactly on n for u close to 1.
        rank.min(self.n - 1)
    }
}

/// How keys are picked.
#[derive(Clone, Debug)]
pub enum KeyDist {
    /// Every key equally likely.
    Uniform { n: u64 },
    /// Zipfian ranks; rank i is key i.
    Zipfian(Zipfian),
}

impl KeyDist {
    /// Number of distinct keys.
    pub fn n(&self) -> u64 {
        match self {
            KeyDist::Uniform { n } => *n,
            KeyDist::Zipfian(z) => z.n(),
        }
    }

    /// One key index in `0..n`.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        match self {
            KeyDist::Uniform { n } => rng.range(0, *n),
            KeyDist::Zipfian(z) => z.sample(rng),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(z: &Zipfian, seed: u64, samples: usize) -> Vec<u64> {
        let mut rng = Rng::new(seed);
        let mut c = vec![0u64; z.n() as usize];
        for _ in 0..samples {
            c[z.sample(&mut rng) as usize] += 1;
        }
        c
    }

    #[test]
    fn same_seed_draws_the_same_keys() {
        let z = Zipfian::new(1000, 0.99).unwrap();
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..1000).map(|_| z.sample(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn samples_stay_in_range() {
        for n in [1, 2, 3, 10, 1000] {
            let z = Zipfian::new(n, 0.99).unwrap();
            let mut rng = Rng::new(n);
            for _ in 0..10_000 {
                assert!(z.sample(&mut rng) < n);
            }
        }
    }

    #[test]
    fn hottest_key_frequency_matches_one_over_zeta() {
        let z = Zipfian::new(1000, 0.99).unwrap();
        let samples = 200_000;
        let c = counts(&z, 1, samples);
        let observed = c[0] as f64 / samples as f64;
        let expected = z.p_hottest();
        assert!(
            (observed - expected).abs() < 0.1 * expected,
            "p(rank 0) = {observed}, expected {expected}"
        );
        // Rank 1 is 2^theta times rarer than rank 0 (both come from exact
        // branches of the generator).
        let ratio = c[0] as f64 / c[1] as f64;
        assert!((ratio - 2f64.powf(0.99)).abs() < 0.15, "ratio {ratio}");
    }

    #[test]
    fn popularity_falls_with_rank_and_the_head_dominates() {
        let z = Zipfian::new(1000, 0.99).unwrap();
        let samples = 200_000;
        let c = counts(&z, 2, samples);
        // Buckets of ranks: each decade is hotter, per key, than the next.
        let per_key =
            |lo: usize, hi: usize| c[lo..hi].iter().sum::<u64>() as f64 / (hi - lo) as f64;
        assert!(per_key(0, 10) > per_key(10, 100));
        assert!(per_key(10, 100) > per_key(100, 1000));
        // With theta 0.99 the top 1% of keys get well over a third of the
        // traffic (about 39% by the formula); uniform would give 1%.
        let head = c[..10].iter().sum::<u64>() as f64 / samples as f64;
        assert!(head > 0.3, "top 10 of 1000 keys got {head}");
    }

    #[test]
    fn uniform_spreads_evenly() {
        let d = KeyDist::Uniform { n: 10 };
        let mut rng = Rng::new(3);
        let mut c = [0u64; 10];
        for _ in 0..100_000 {
            c[d.sample(&mut rng) as usize] += 1;
        }
        for x in c {
            assert!((9_000..11_000).contains(&x), "{c:?}");
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(Zipfian::new(0, 0.99).is_err());
        assert!(Zipfian::new(10, 1.0).is_err());
        assert!(Zipfian::new(10, 0.0).is_err());
        assert!(Zipfian::new(10, f64::NAN).is_err());
    }
}
