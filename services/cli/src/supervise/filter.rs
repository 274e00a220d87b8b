//! The seccomp filter the child installs before exec: bind, listen,
//! connect and execve of the native ABI go to the supervisor (user
//! notification), everything else runs untouched. Calls made through
//! another ABI (x32, 32-bit compat) are let through unmoved: their numbers
//! differ and a program of that kind is rare enough not to be worth a
//! second table.
//!
//! connect is trapped so a client follows its scope's moved server, as the
//! preload's connect hook has it; the BPF program cannot read the address,
//! so every connect of the tree pays for the round trip, and the supervisor
//! lets all but a connect to a moved port of this host continue.

use libc::{c_long, sock_filter};

#[cfg(target_arch = "x86_64")]
const NATIVE_AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const NATIVE_AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64

/// The calls the supervisor answers.
pub const TRAPPED: [c_long; 5] =
    [libc::SYS_bind, libc::SYS_listen, libc::SYS_connect, libc::SYS_execve, libc::SYS_execveat];

/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;

fn statement(code: u32, k: u32) -> sock_filter {
    sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

fn jump_if_equal(k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16, jt, jf, k }
}

/// The BPF program: foreign ABI -> allow; a trapped call -> notify; else allow.
pub fn program() -> Vec<sock_filter> {
    let load = |offset| statement(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset);
    let ret = |value| statement(libc::BPF_RET | libc::BPF_K, value);
    let trapped = TRAPPED.len() as u8;
    let mut program = vec![
        load(ARCH_OFFSET),
        // Not native: jump over the number checks to "allow".
        jump_if_equal(NATIVE_AUDIT_ARCH, 0, trapped + 1),
        load(NR_OFFSET),
    ];
    for (i, nr) in TRAPPED.iter().enumerate() {
        // Equal: jump to "notify", after the remaining checks and "allow".
        program.push(jump_if_equal(*nr as u32, trapped - i as u8, 0));
    }
    program.push(ret(libc::SECCOMP_RET_ALLOW));
    program.push(ret(libc::SECCOMP_RET_USER_NOTIF));
    program
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program over one seccomp_data the way the kernel does.
    fn verdict(program: &[sock_filter], arch: u32, nr: u32) -> u32 {
        let mut pc = 0usize;
        let mut acc = 0u32;
        loop {
            let insn = program[pc];
            let code = u32::from(insn.code);
            if code == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS {
                acc = if insn.k == ARCH_OFFSET { arch } else { nr };
                pc += 1;
            } else if code == libc::BPF_RET | libc::BPF_K {
                return insn.k;
            } else {
                let skip = if acc == insn.k { insn.jt } else { insn.jf };
                pc += 1 + usize::from(skip);
            }
        }
    }

    #[test]
    fn only_the_trapped_calls_of_the_native_abi_reach_the_supervisor() {
        let program = program();
        for nr in TRAPPED {
            assert_eq!(verdict(&program, NATIVE_AUDIT_ARCH, nr as u32), libc::SECCOMP_RET_USER_NOTIF, "{nr}");
            assert_eq!(verdict(&program, 0x4000_0003, nr as u32), libc::SECCOMP_RET_ALLOW, "{nr} foreign");
        }
        for nr in [libc::SYS_read, libc::SYS_sendto, libc::SYS_socket, libc::SYS_accept4, libc::SYS_openat] {
            assert_eq!(verdict(&program, NATIVE_AUDIT_ARCH, nr as u32), libc::SECCOMP_RET_ALLOW, "{nr}");
        }
    }
}
