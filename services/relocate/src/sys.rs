//! Thin, allocation-free wrappers over the libc calls the hooks need.

use libc::c_int;

pub fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

pub fn set_errno(value: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = value }
}

/// An integer socket option, `None` when the socket does not have it.
pub fn sockopt(fd: c_int, level: c_int, name: c_int) -> Option<c_int> {
    let mut value: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writing an int.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) };
    (rc == 0).then_some(value)
}

pub fn set_sockopt(fd: c_int, level: c_int, name: c_int, value: c_int) -> bool {
    // SAFETY: value is a readable int.
    let rc =
        unsafe { libc::setsockopt(fd, level, name, (&raw const value).cast(), size_of::<c_int>() as libc::socklen_t) };
    rc == 0
}

/// Whether the `len` bytes at `ptr` can be read, asked of the kernel
/// rather than found out by a SIGSEGV in someone else's program. The kernel
/// copies a signal mask in from any address before it looks at `how`: an
/// invalid `how` makes the call a pure probe, EFAULT for memory it cannot
/// read and EINVAL, changing nothing, otherwise. One 8-byte probe per page
/// the bytes touch (a socket address touches at most two).
pub fn is_readable(ptr: *const u8, len: usize) -> bool {
    const PROBE: usize = 8;
    const PAGE: usize = 4096;
    if len == 0 {
        return true;
    }
    let start = ptr as usize;
    let Some(end) = start.checked_add(len) else {
        return false;
    };
    // The first and the last PROBE bytes; a span shorter than that is probed
    // from its start, which may reach a few bytes further than asked.
    let last = end.saturating_sub(PROBE).max(start);
    let probes = [start, last];
    let pages_differ = start / PAGE != end.saturating_sub(1) / PAGE;
    probes.iter().take(if pages_differ { 2 } else { 1 }).all(|&at| {
        // SAFETY: the kernel reads 8 bytes at `at` or fails with EFAULT;
        // with an invalid `how` it changes no signal mask.
        let rc = unsafe {
            libc::syscall(libc::SYS_rt_sigprocmask, -1 as c_int, at as *const u8, core::ptr::null_mut::<u8>(), PROBE)
        };
        !(rc == -1 && errno() == libc::EFAULT)
    })
}

pub fn is_stream_socket(fd: c_int) -> bool {
    sockopt(fd, libc::SOL_SOCKET, libc::SO_TYPE) == Some(libc::SOCK_STREAM)
}

pub fn close(fd: c_int) {
    // SAFETY: closing a descriptor this library opened.
    unsafe { libc::close(fd) };
}

/// Monotonic clock in nanoseconds (vDSO, no syscall).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is writable.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

pub fn getpid() -> u32 {
    // SAFETY: cannot fail.
    unsafe { libc::getpid() as u32 }
}

pub fn geteuid() -> u32 {
    // SAFETY: cannot fail.
    unsafe { libc::geteuid() }
}

pub fn getppid() -> u32 {
    // SAFETY: cannot fail.
    unsafe { libc::getppid() as u32 }
}

/// Whether a process with this pid exists (EPERM: it exists, another user's).
pub fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 || errno() == libc::EPERM }
}

/// Reads a small file into `buf` (no allocation); the bytes read.
pub fn read_file<'a>(path: &core::ffi::CStr, buf: &'a mut [u8]) -> Option<&'a [u8]> {
    // SAFETY: path is NUL-terminated; buf is writable for its length.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        close(fd);
        buf.get(..usize::try_from(n).ok()?)
    }
}

/// Decimal digits only, no sign; None on overflow or anything else.
pub fn parse_u32(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u32, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u32::from(digit))
    })
}

/// A fixed-capacity byte buffer on the stack; writes past the end are cut.
pub struct StackBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Default for StackBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> StackBuf<N> {
    pub const fn new() -> Self {
        Self { bytes: [0; N], len: 0 }
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }

    /// Whether everything written so far fit.
    pub fn push(&mut self, data: &[u8]) -> bool {
        for &b in data {
            let Some(slot) = self.bytes.get_mut(self.len) else {
                return false;
            };
            *slot = b;
            self.len = self.len.saturating_add(1);
        }
        true
    }

    pub fn push_u32(&mut self, mut n: u32) -> bool {
        let mut digits = [0u8; 10];
        let mut start = digits.len();
        loop {
            start = start.saturating_sub(1);
            if let Some(d) = digits.get_mut(start) {
                *d = b'0'.saturating_add((n % 10) as u8);
            }
            n /= 10;
            if n == 0 || start == 0 {
                break;
            }
        }
        self.push(digits.get(start..).unwrap_or(&[]))
    }

    /// Writes `n` over the `width` bytes at `at`, right-aligned (the bytes
    /// before it stay as they were); false when it does not fit.
    pub fn put_u32_at(&mut self, at: usize, width: usize, n: u32) -> bool {
        let mut digits = StackBuf::<10>::new();
        let _ = digits.push_u32(n);
        let digits = digits.as_bytes();
        let Some(start) = at.checked_add(width).and_then(|end| end.checked_sub(digits.len())) else {
            return false;
        };
        match self.bytes.get_mut(start..start.saturating_add(digits.len())) {
            Some(slot) if start >= at && start.saturating_add(digits.len()) <= self.len => {
                slot.copy_from_slice(digits);
                true
            }
            _ => false,
        }
    }

    /// Appends `text` as the inside of a JSON string.
    pub fn push_json_str(&mut self, text: &[u8]) -> bool {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for &b in text {
            let ok = match b {
                b'"' => self.push(b"\\\""),
                b'\\' => self.push(b"\\\\"),
                0..=0x1f => {
                    let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
                    let lo = HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0');
                    self.push(&[b'\\', b'u', b'0', b'0', hi, lo])
                }
                _ => self.push(&[b]),
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// The contents followed by a NUL, for C APIs (None when it does not fit).
    pub fn as_cstr(&mut self) -> Option<&core::ffi::CStr> {
        if !self.push(&[0]) {
            return None;
        }
        core::ffi::CStr::from_bytes_with_nul(self.as_bytes()).ok()
    }
}

/// Writes the whole of `data` to stderr (one write in practice: a line is
/// far below PIPE_BUF, so it cannot interleave with the program's output).
pub fn write_stderr(data: &[u8]) {
    let mut rest = data;
    while !rest.is_empty() {
        // SAFETY: rest is readable for its length.
        let n = unsafe { libc::write(libc::STDERR_FILENO, rest.as_ptr().cast(), rest.len()) };
        match usize::try_from(n) {
            Ok(0) => return,
            Ok(n) => rest = rest.get(n..).unwrap_or(&[]),
            Err(_) if errno() == libc::EINTR => continue,
            Err(_) => return,
        }
    }
}
