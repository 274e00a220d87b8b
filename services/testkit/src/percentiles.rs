//! The percentile line every benchmark prints.

use std::time::Duration;

/// Sorts `samples`, prints their count, p50, p90, p99, p999 and maximum,
/// and returns the p50.
pub fn report(label: &str, samples: &mut [Duration]) -> Duration {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "{label:<50} n={:<7} p50={:>9.2?} p90={:>9.2?} p99={:>9.2?} p999={:>9.2?} max={:>9.2?}",
        samples.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
        at(1.0)
    );
    at(0.50)
}
