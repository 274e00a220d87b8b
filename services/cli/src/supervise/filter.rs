//! The seccomp filter the child installs before exec: bind, listen,
//! connect and execve of the native ABI go to the supervisor (user
//! notification), everything else runs untouched. The socket calls of the
//! other ABIs a process of this machine can switch to (x32 and 32-bit
//! compat on x86_64, 32-bit ARM on aarch64) fail with ENOSYS: their numbers
//! and structures differ, the supervisor reads only the native ones, and a
//! server must not slip past it unmoved. Every other call of those ABIs
//! runs untouched, so such a program runs, only without sockets.
//!
//! connect is trapped so a client follows its scope's moved server, as the
//! preload's connect hook has it; the BPF program cannot read the address,
//! so every connect of the tree pays for the round trip, and the supervisor
//! lets all but a connect to a moved port of this host continue.

use libc::{c_long, sock_filter};

#[cfg(target_arch = "x86_64")]
mod abi {
    pub const NATIVE_AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
    pub const COMPAT_AUDIT_ARCH: u32 = 0x4000_0003; // AUDIT_ARCH_I386
    /// x32 calls carry the native arch with this bit set in the number.
    pub const X32_SYSCALL_BIT: Option<u32> = Some(0x4000_0000);
    /// i386: socketcall (the multiplexer), bind, connect, listen.
    pub const COMPAT_SOCKET_CALLS: &[u32] = &[102, 361, 362, 363];
}

#[cfg(target_arch = "aarch64")]
mod abi {
    pub const NATIVE_AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64
    pub const COMPAT_AUDIT_ARCH: u32 = 0x4000_0028; // AUDIT_ARCH_ARM
    pub const X32_SYSCALL_BIT: Option<u32> = None;
    /// 32-bit ARM (EABI): bind, connect, listen.
    pub const COMPAT_SOCKET_CALLS: &[u32] = &[282, 283, 284];
}

use abi::*;

/// The calls the supervisor answers.
pub const TRAPPED: [c_long; 5] =
    [libc::SYS_bind, libc::SYS_listen, libc::SYS_connect, libc::SYS_execve, libc::SYS_execveat];

/// The native socket calls, whose x32 twins are refused.
const SOCKET_CALLS: [c_long; 3] = [libc::SYS_bind, libc::SYS_listen, libc::SYS_connect];

/// What a refused call returns.
const DENY: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;

/// Where a jump goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    Notify,
    Deny,
    X32,
    Foreign,
}

/// One instruction, jumps by label; `assemble` turns labels into offsets.
enum Step {
    Load(u32),
    /// Equal: to the label; else the next instruction.
    JumpIfEqual(u32, Label),
    /// Equal: the next instruction; else to the label.
    JumpUnlessEqual(u32, Label),
    /// At least: to the label; else the next instruction.
    JumpIfAtLeast(u32, Label),
    Return(u32),
    Here(Label),
}

/// The BPF program, as the module's comment says.
pub fn program() -> Vec<sock_filter> {
    use Step::*;
    let mut steps = vec![Load(ARCH_OFFSET), JumpUnlessEqual(NATIVE_AUDIT_ARCH, Label::Foreign), Load(NR_OFFSET)];
    if let Some(bit) = X32_SYSCALL_BIT {
        steps.push(JumpIfAtLeast(bit, Label::X32));
    }
    steps.extend(TRAPPED.iter().map(|&nr| JumpIfEqual(nr as u32, Label::Notify)));
    steps.extend([Return(libc::SECCOMP_RET_ALLOW), Here(Label::Notify), Return(libc::SECCOMP_RET_USER_NOTIF)]);
    if let Some(bit) = X32_SYSCALL_BIT {
        steps.push(Here(Label::X32));
        steps.extend(SOCKET_CALLS.iter().map(|&nr| JumpIfEqual(nr as u32 | bit, Label::Deny)));
        steps.push(Return(libc::SECCOMP_RET_ALLOW));
    }
    // The arch is still loaded: no process runs any other than these two.
    steps.extend([Here(Label::Foreign), JumpUnlessEqual(COMPAT_AUDIT_ARCH, Label::Deny), Load(NR_OFFSET)]);
    steps.extend(COMPAT_SOCKET_CALLS.iter().map(|&nr| JumpIfEqual(nr, Label::Deny)));
    steps.extend([Return(libc::SECCOMP_RET_ALLOW), Here(Label::Deny), Return(DENY)]);
    assemble(&steps)
}

/// Resolves the labels into forward offsets (every jump here goes forward,
/// and the program is far shorter than the 255 instructions a jump spans).
fn assemble(steps: &[Step]) -> Vec<sock_filter> {
    let mut at = Vec::new();
    let mut index = 0u8;
    for step in steps {
        match step {
            Step::Here(label) => at.push((*label, index)),
            _ => index += 1,
        }
    }
    let target = |label: Label| at.iter().find(|(l, _)| *l == label).map(|(_, i)| *i).unwrap_or(index);
    let jump = |k: u32, code: u32, jt: u8, jf: u8| sock_filter {
        code: (libc::BPF_JMP | code | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let mut program = Vec::new();
    for step in steps {
        // Offsets count from the instruction after the jump.
        let from = program.len() as u8 + 1;
        let insn = match *step {
            Step::Here(_) => continue,
            Step::Load(offset) => {
                sock_filter { code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, jt: 0, jf: 0, k: offset }
            }
            Step::JumpIfEqual(k, label) => jump(k, libc::BPF_JEQ, target(label) - from, 0),
            Step::JumpUnlessEqual(k, label) => jump(k, libc::BPF_JEQ, 0, target(label) - from),
            Step::JumpIfAtLeast(k, label) => jump(k, libc::BPF_JGE, target(label) - from, 0),
            Step::Return(value) => sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: value },
        };
        program.push(insn);
    }
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
                let taken = if code & 0xf0 == libc::BPF_JGE { acc >= insn.k } else { acc == insn.k };
                let skip = if taken { insn.jt } else { insn.jf };
                pc += 1 + usize::from(skip);
            }
        }
    }

    #[test]
    fn only_the_trapped_calls_of_the_native_abi_reach_the_supervisor() {
        let program = program();
        for nr in TRAPPED {
            assert_eq!(verdict(&program, NATIVE_AUDIT_ARCH, nr as u32), libc::SECCOMP_RET_USER_NOTIF, "{nr}");
        }
        for nr in [libc::SYS_read, libc::SYS_sendto, libc::SYS_socket, libc::SYS_accept4, libc::SYS_openat] {
            assert_eq!(verdict(&program, NATIVE_AUDIT_ARCH, nr as u32), libc::SECCOMP_RET_ALLOW, "{nr}");
        }
    }

    #[test]
    fn the_socket_calls_of_other_abis_fail_and_their_other_calls_run() {
        let program = program();
        for &nr in COMPAT_SOCKET_CALLS {
            assert_eq!(verdict(&program, COMPAT_AUDIT_ARCH, nr), DENY, "compat {nr}");
        }
        // read, write and exit_group of the 32-bit ABIs.
        for nr in [3, 4, 252] {
            assert_eq!(verdict(&program, COMPAT_AUDIT_ARCH, nr), libc::SECCOMP_RET_ALLOW, "compat {nr}");
        }
        if let Some(bit) = X32_SYSCALL_BIT {
            for nr in SOCKET_CALLS {
                assert_eq!(verdict(&program, NATIVE_AUDIT_ARCH, nr as u32 | bit), DENY, "x32 {nr}");
            }
            for nr in [libc::SYS_read, libc::SYS_socket, libc::SYS_execve] {
                assert_eq!(verdict(&program, NATIVE_AUDIT_ARCH, nr as u32 | bit), libc::SECCOMP_RET_ALLOW, "x32 {nr}");
            }
        }
        assert_eq!(verdict(&program, 0x4000_0001, libc::SYS_read as u32), DENY, "an arch no process here runs");
    }
}
