//! What one run of a case yields, latency histograms, and the statistics
//! the report ranks with.

/// One repetition of one case.
#[derive(Default, Clone)]
pub struct Sample {
    /// The figure, in the case's unit.
    pub value: f64,
    /// Operations in the measured interval: round trips, messages received
    /// or lock increments (what the CPU and IPI figures are divided by).
    pub ops: u64,
    /// CPU time of all parties over their measured intervals, and the part
    /// of it spent in the kernel.
    pub cpu_ns: u64,
    pub sys_ns: u64,
    /// Function-call IPIs, machine-wide, over the measured interval.
    pub ipis: Option<u64>,
    /// System calls and `membarrier` calls of all parties (counting pass).
    pub syscalls: Option<u64>,
    pub membarriers: Option<u64>,
    /// Per round trip, from the second half of the measured interval.
    pub hist: Option<Hist>,
    /// Lock workloads: increments made by each of the two processes, and
    /// how often the lock passed from one to the other.
    pub split: Option<[u64; 2]>,
    pub handoffs: Option<u64>,
    /// A note the case wants printed once (buffer sizes it set).
    pub note: Option<String>,
}

/// A log-linear histogram of nanoseconds: exact below 64, then 32
/// sub-buckets per power of two (each value within 3.2% of its bucket's
/// midpoint).
#[derive(Clone)]
pub struct Hist {
    counts: Vec<u64>,
    n: u64,
}

const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = 64 + (64 - 6) * SUB as usize;

impl Hist {
    pub fn new() -> Hist {
        Hist {
            counts: vec![0; BUCKETS],
            n: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < 64 {
            return v as usize;
        }
        let e = 63 - v.leading_zeros(); // 6..=63
        let sub = (v >> (e - SUB_BITS)) & (SUB - 1);
        64 + (e as usize - 6) * SUB as usize + sub as usize
    }

    /// The midpoint of bucket `i`.
    fn value(i: usize) -> f64 {
        if i < 64 {
            return i as f64;
        }
        let e = 6 + (i - 64) as u32 / SUB as u32;
        let sub = ((i - 64) as u64) % SUB;
        let width = 1u64 << (e - SUB_BITS);
        ((SUB + sub) * width) as f64 + width as f64 / 2.0
    }

    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.counts[Hist::index(ns)] += 1;
        self.n += 1;
    }

    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.n += other.n;
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    /// The `q` quantile (0 < q < 1), as its bucket's midpoint.
    pub fn quantile(&self, q: f64) -> f64 {
        let rank = ((self.n as f64 * q).ceil() as u64).clamp(1, self.n.max(1));
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Hist::value(i);
            }
        }
        f64::NAN
    }
}

pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn min_max(xs: &[f64]) -> (f64, f64) {
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}
