//! The real `bind`, `listen` and `connect`: the only way this library may
//! bind, listen or connect an inet socket.
//! Calling libc's `bind` by name from inside the library would resolve to our
//! own hook again (recursion), so the next definitions are looked up once at
//! load time; before that (or if the lookup fails) the raw syscall is used.

use core::sync::atomic::{AtomicUsize, Ordering};
use libc::{c_int, sockaddr, socklen_t};

/// `bind` and `connect`.
type BindFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
type ListenFn = unsafe extern "C" fn(c_int, c_int) -> c_int;

static NEXT_BIND: AtomicUsize = AtomicUsize::new(0);
static NEXT_LISTEN: AtomicUsize = AtomicUsize::new(0);
static NEXT_CONNECT: AtomicUsize = AtomicUsize::new(0);

/// Looks up the definitions after ours (libc's, or another preload's).
pub fn resolve() {
    // SAFETY: dlsym with RTLD_NEXT and NUL-terminated names.
    unsafe {
        NEXT_BIND.store(libc::dlsym(libc::RTLD_NEXT, c"bind".as_ptr()) as usize, Ordering::Release);
        NEXT_LISTEN.store(libc::dlsym(libc::RTLD_NEXT, c"listen".as_ptr()) as usize, Ordering::Release);
        NEXT_CONNECT.store(libc::dlsym(libc::RTLD_NEXT, c"connect".as_ptr()) as usize, Ordering::Release);
    }
}

/// # Safety
/// `addr` must point to `len` readable bytes.
pub unsafe fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { call_with_address(&NEXT_BIND, libc::SYS_bind, fd, addr, len) }
}

/// # Safety
/// `addr` must point to `len` readable bytes.
pub unsafe fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { call_with_address(&NEXT_CONNECT, libc::SYS_connect, fd, addr, len) }
}

/// Calls the definition `next` holds (bind and connect share a signature),
/// else the raw system call `number`.
///
/// # Safety
/// `addr` must point to `len` readable bytes.
unsafe fn call_with_address(
    next: &AtomicUsize,
    number: libc::c_long,
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> c_int {
    let next = next.load(Ordering::Acquire);
    if next == 0 {
        // SAFETY: the kernel validates the arguments.
        return unsafe { libc::syscall(number, fd, addr, len) } as c_int;
    }
    // SAFETY: `next` came from dlsym of "bind" or "connect", which have this signature.
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
