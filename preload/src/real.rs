//! The real `bind` and `listen`: the only way this library may bind or listen.
//! Calling libc's `bind` by name from inside the library would resolve to our
//! own hook again (recursion), so the next definitions are looked up once at
//! load time; before that (or if the lookup fails) the raw syscall is used.

use core::sync::atomic::{AtomicUsize, Ordering};
use libc::{c_int, sockaddr, socklen_t};

type BindFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
type ListenFn = unsafe extern "C" fn(c_int, c_int) -> c_int;

static NEXT_BIND: AtomicUsize = AtomicUsize::new(0);
static NEXT_LISTEN: AtomicUsize = AtomicUsize::new(0);

/// Looks up the definitions after ours (libc's, or another preload's).
pub fn resolve() {
    // SAFETY: dlsym with RTLD_NEXT and NUL-terminated names.
    unsafe {
        NEXT_BIND.store(libc::dlsym(libc::RTLD_NEXT, c"bind".as_ptr()) as usize, Ordering::Release);
        NEXT_LISTEN.store(libc::dlsym(libc::RTLD_NEXT, c"listen".as_ptr()) as usize, Ordering::Release);
    }
}

/// # Safety
/// `addr` must point to `len` readable bytes.
pub unsafe fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let next = NEXT_BIND.load(Ordering::Acquire);
    if next == 0 {
        // SAFETY: the kernel validates the arguments.
        return unsafe { libc::syscall(libc::SYS_bind, fd, addr, len) } as c_int;
    }
    // SAFETY: `next` came from dlsym("bind"), which has this signature.
    unsafe {
        let f: BindFn = core::mem::transmute::<usize, BindFn>(next);
        f(fd, addr, len)
    }
}

pub fn listen(fd: c_int, backlog: c_int) -> c_int {
    let next = NEXT_LISTEN.load(Ordering::Acquire);
    if next == 0 {
        // SAFETY: plain integer arguments.
        return unsafe { libc::syscall(libc::SYS_listen, fd, backlog) } as c_int;
    }
    // SAFETY: `next` came from dlsym("listen"), which has this signature.
    unsafe {
        let f: ListenFn = core::mem::transmute::<usize, ListenFn>(next);
        f(fd, backlog)
    }
}
