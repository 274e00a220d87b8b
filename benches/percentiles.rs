//! The percentile line the benchmarks print, shared by file (`#[path]`)
//! since benchmarks of different crates cannot share a module otherwise.

use std::time::Duration;

/// Sorts `samples` and prints their count, p50, p90, p99, p999 and maximum.
pub fn report(label: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "{label:<42} n={:<7} p50={:>9.2?} p90={:>9.2?} p99={:>9.2?} p999={:>9.2?} max={:>9.2?}",
        samples.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
        at(1.0)
    );
}
