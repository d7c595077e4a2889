//! Percentiles of a set of timings, printed one line per measurement.

use std::time::Duration;

/// The spread of one measurement's samples.
#[derive(Debug, Clone)]
pub struct Summary {
    pub n: usize,
    pub min: Duration,
    pub p50: Duration,
    pub p95: Duration,
    pub max: Duration,
}

impl Summary {
    /// Summarize `samples` (at least one) and print them under `name`.
    pub fn print(name: &str, mut samples: Vec<Duration>) -> Summary {
        assert!(!samples.is_empty(), "{name}: no samples");
        samples.sort();
        let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
        let summary = Summary {
            n: samples.len(),
            min: samples[0],
            p50: pick(0.5),
            p95: pick(0.95),
            max: samples[samples.len() - 1],
        };
        println!(
            "{name:<52} n={:<3} min {:>7.2}  p50 {:>7.2}  p95 {:>7.2}  max {:>7.2} ms",
            summary.n,
            ms(summary.min),
            ms(summary.p50),
            ms(summary.p95),
            ms(summary.max)
        );
        summary
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
