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

/// One CPU kept busy at the lowest priority (SCHED_IDLE) while this lives.
///
/// On a virtual machine an idle virtual CPU halts, and waking it for a
/// request costs tens of microseconds: a request and its answer between two
/// processes then measure that rather than either program (on this project's
/// CI kind, an allocate p50 is about three times as long as with a CPU kept
/// awake). A benchmark prints both; the spinner yields to any real work.
pub struct KeptAwake {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    spinner: Option<std::thread::JoinHandle<()>>,
}

impl KeptAwake {
    pub fn start() -> KeptAwake {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let spinner = std::thread::spawn(move || {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: sets this thread's policy; param is a valid struct.
            let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
            assert_eq!(rc, 0, "SCHED_IDLE: {}", std::io::Error::last_os_error());
            while !flag.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        KeptAwake { stop, spinner: Some(spinner) }
    }
}

impl Drop for KeptAwake {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(spinner) = self.spinner.take() {
            let _ = spinner.join();
        }
    }
}
