//! Just enough ELF reading to tell whether LD_PRELOAD can reach a program's
//! `bind()`: not in a static binary (no dynamic loader), and not in a Go
//! program (Go makes its own system calls, even when linked with cgo).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linkage {
    /// Has a dynamic loader (PT_INTERP): LD_PRELOAD applies.
    Dynamic,
    /// No PT_INTERP: the loader never runs, LD_PRELOAD is ignored.
    Static,
    /// A Go program: LD_PRELOAD cannot intercept its sockets.
    Go,
}

const PT_INTERP: u32 = 3;
const PT_NOTE: u32 = 4;
/// Type of the note the Go linker writes (`ELF_NOTE_GOBUILDID_TAG`).
const NT_GO_BUILD_ID: u32 = 4;
/// Upper bounds for tables read from an untrusted file.
const MAX_ENTRIES: usize = 4096;
const MAX_TABLE: u64 = 1 << 20;

struct Elf {
    file: File,
    is64: bool,
    little: bool,
}

impl Elf {
    fn read(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        if len > MAX_TABLE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "ELF table too large"));
        }
        let mut buf = vec![0; len as usize];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn u16(&self, b: &[u8], at: usize) -> u16 {
        let v = [b[at], b[at + 1]];
        if self.little { u16::from_le_bytes(v) } else { u16::from_be_bytes(v) }
    }

    fn u32(&self, b: &[u8], at: usize) -> u32 {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if self.little { u32::from_le_bytes(v) } else { u32::from_be_bytes(v) }
    }

    /// A 64-bit field in ELF64, a 32-bit one in ELF32.
    fn word(&self, b: &[u8], at64: usize, at32: usize) -> u64 {
        if self.is64 {
            let v: [u8; 8] = b[at64..at64 + 8].try_into().unwrap_or_default();
            if self.little { u64::from_le_bytes(v) } else { u64::from_be_bytes(v) }
        } else {
            u64::from(self.u32(b, at32))
        }
    }

    /// Reads `count` entries of `size` bytes at `offset` (at least `min`
    /// bytes each).
    fn table(&self, offset: u64, size: u16, count: u16, min: usize) -> io::Result<Vec<Vec<u8>>> {
        let (size, count) = (usize::from(size), usize::from(count));
        if count == 0 {
            return Ok(Vec::new());
        }
        if size < min || count > MAX_ENTRIES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad ELF table"));
        }
        let raw = self.read(offset, (size * count) as u64)?;
        Ok(raw.chunks_exact(size).map(<[u8]>::to_vec).collect())
    }
}

/// What kind of program `path` is; `None` when it is not ELF (a script).
pub fn inspect(path: &Path) -> io::Result<Option<Linkage>> {
    let file = File::open(path)?;
    let mut ident = [0u8; 64];
    let n = file.read_at(&mut ident, 0)?;
    if n < 52 || &ident[..4] != b"\x7fELF" {
        return Ok(None);
    }
    let elf = Elf { file, is64: ident[4] == 2, little: ident[5] != 2 };
    if elf.is64 && n < 64 {
        return Ok(None);
    }
    let h = &ident;
    let (phoff, shoff) = (elf.word(h, 0x20, 0x1c), elf.word(h, 0x28, 0x20));
    let (phentsize, phnum) =
        if elf.is64 { (elf.u16(h, 0x36), elf.u16(h, 0x38)) } else { (elf.u16(h, 0x2a), elf.u16(h, 0x2c)) };
    let (shentsize, shnum, shstrndx) = if elf.is64 {
        (elf.u16(h, 0x3a), elf.u16(h, 0x3c), elf.u16(h, 0x3e))
    } else {
        (elf.u16(h, 0x2e), elf.u16(h, 0x30), elf.u16(h, 0x32))
    };

    let mut interp = false;
    for ph in elf.table(phoff, phentsize, phnum, if elf.is64 { 0x38 } else { 0x20 })? {
        match elf.u32(&ph, 0) {
            PT_INTERP => interp = true,
            PT_NOTE => {
                let (offset, size) = (elf.word(&ph, 0x08, 0x04), elf.word(&ph, 0x20, 0x10));
                if has_go_note(&elf, &elf.read(offset, size)?) {
                    return Ok(Some(Linkage::Go));
                }
            }
            _ => {}
        }
    }
    if has_go_section(&elf, shoff, shentsize, shnum, shstrndx)? {
        return Ok(Some(Linkage::Go));
    }
    Ok(Some(if interp { Linkage::Dynamic } else { Linkage::Static }))
}

/// Walks the notes of a PT_NOTE segment looking for the Go build id.
fn has_go_note(elf: &Elf, notes: &[u8]) -> bool {
    let align4 = |n: usize| n.div_ceil(4) * 4;
    let mut at = 0;
    while at + 12 <= notes.len() {
        let namesz = elf.u32(notes, at) as usize;
        let descsz = elf.u32(notes, at + 4) as usize;
        let kind = elf.u32(notes, at + 8);
        let name_start = at + 12;
        let Some(name) = notes.get(name_start..name_start + namesz) else {
            return false;
        };
        if kind == NT_GO_BUILD_ID && name.split(|b| *b == 0).next() == Some(b"Go") {
            return true;
        }
        at = name_start + align4(namesz) + align4(descsz);
    }
    false
}

/// Looks for `.go.buildinfo` or `.note.go.buildid` among the sections.
fn has_go_section(elf: &Elf, shoff: u64, size: u16, count: u16, strndx: u16) -> io::Result<bool> {
    let sections = elf.table(shoff, size, count, if elf.is64 { 0x28 } else { 0x18 })?;
    let Some(strtab) = sections.get(usize::from(strndx)) else {
        return Ok(false);
    };
    let names = elf.read(elf.word(strtab, 0x18, 0x10), elf.word(strtab, 0x20, 0x14))?;
    Ok(sections.iter().any(|s| {
        let start = elf.u32(s, 0) as usize;
        let name = names.get(start..).and_then(|n| n.split(|b| *b == 0).next()).unwrap_or_default();
        name == b".go.buildinfo" || name == b".note.go.buildid"
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A little-endian ELF64 file with the given program headers
    /// (type, payload) and no sections.
    fn elf64(segments: &[(u32, Vec<u8>)]) -> tempfile::NamedTempFile {
        let phoff = 64u64;
        let mut data_at = phoff + 56 * segments.len() as u64;
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = 2; // ELF64
        header[5] = 1; // little-endian
        header[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
        header[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        header[0x38..0x3a].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        let mut phdrs = Vec::new();
        let mut payloads = Vec::new();
        for (kind, payload) in segments {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&kind.to_le_bytes());
            ph[0x08..0x10].copy_from_slice(&data_at.to_le_bytes());
            ph[0x20..0x28].copy_from_slice(&(payload.len() as u64).to_le_bytes());
            data_at += payload.len() as u64;
            phdrs.extend(ph);
            payloads.extend(payload);
        }
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[header, phdrs, payloads].concat()).unwrap();
        f
    }

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let pad = |v: &[u8]| {
            let mut v = v.to_vec();
            v.resize(v.len().div_ceil(4) * 4, 0);
            v
        };
        let mut n = Vec::new();
        n.extend((name.len() as u32).to_le_bytes());
        n.extend((desc.len() as u32).to_le_bytes());
        n.extend(kind.to_le_bytes());
        n.extend(pad(name));
        n.extend(pad(desc));
        n
    }

    #[test]
    fn loader_means_dynamic_and_no_loader_means_static() {
        let dynamic = elf64(&[(PT_INTERP, b"/lib64/ld-linux-x86-64.so.2\0".to_vec())]);
        assert_eq!(inspect(dynamic.path()).unwrap(), Some(Linkage::Dynamic));
        let gnu_note = note(b"GNU\0", 3, &[1, 2, 3, 4]);
        let static_bin = elf64(&[(PT_NOTE, gnu_note)]);
        assert_eq!(inspect(static_bin.path()).unwrap(), Some(Linkage::Static));
    }

    #[test]
    fn go_build_id_note_means_go_even_with_a_loader() {
        let notes = [note(b"GNU\0", 3, &[9; 20]), note(b"Go\0\0", NT_GO_BUILD_ID, b"abc/def")].concat();
        let go = elf64(&[(PT_INTERP, b"/lib/ld.so\0".to_vec()), (PT_NOTE, notes)]);
        assert_eq!(inspect(go.path()).unwrap(), Some(Linkage::Go));
    }

    #[test]
    fn scripts_are_not_elf_and_the_system_shell_is_dynamic() {
        let mut script = tempfile::NamedTempFile::new().unwrap();
        script.write_all(b"#!/bin/sh\necho hi\n").unwrap();
        assert_eq!(inspect(script.path()).unwrap(), None);
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        assert_eq!(inspect(&sh).unwrap(), Some(Linkage::Dynamic));
    }

    #[test]
    fn glibc_ldconfig_is_static() {
        // glibc ships ldconfig statically linked (static-pie: no PT_INTERP).
        assert_eq!(inspect(Path::new("/sbin/ldconfig")).unwrap(), Some(Linkage::Static));
    }

    #[test]
    fn truncated_tables_are_errors_not_panics() {
        let f = elf64(&[(PT_NOTE, note(b"Go\0\0", NT_GO_BUILD_ID, b"x"))]);
        let bytes = std::fs::read(f.path()).unwrap();
        let mut cut = tempfile::NamedTempFile::new().unwrap();
        cut.write_all(&bytes[..80]).unwrap();
        assert!(inspect(cut.path()).is_err());
    }
}
