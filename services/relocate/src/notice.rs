//! The one line a move prints on the program's stderr (never stdout: it may
//! carry a protocol):
//! `styxy: port 8000 is in use by python3 (pid 4242, api); listening on 8001 instead`.

use crate::Subject;
use crate::client::Holder;
use crate::config;
use crate::sys::StackBuf;

pub fn moved(subject: &impl Subject, requested: u16, now: u16, holder: Option<&Holder>) {
    if config::get().is_none_or(|c| c.quiet) {
        return;
    }
    subject.tell(line(requested, now, holder).as_bytes());
}

fn line(requested: u16, now: u16, holder: Option<&Holder>) -> StackBuf<256> {
    let mut out = StackBuf::<256>::new();
    let _ = out.push(b"styxy: port ") && out.push_u32(u32::from(requested)) && out.push(b" is in use");
    if let Some(h) = holder {
        describe(&mut out, h);
    }
    let _ = out.push(b"; listening on ") && out.push_u32(u32::from(now)) && out.push(b" instead\n");
    out
}

/// ` by NAME (pid N, TYPE)`, with whatever parts the allocator may show us.
fn describe(out: &mut StackBuf<256>, h: &Holder) {
    let name = if h.process.as_bytes().is_empty() { h.user.as_bytes() } else { h.process.as_bytes() };
    if name.is_empty() {
        return;
    }
    let _ = out.push(b" by ") && push_printable(out, name);
    let service = h.service_type.as_bytes();
    if h.pid.is_none() && service.is_empty() {
        return;
    }
    let _ = out.push(b" (");
    if let Some(pid) = h.pid {
        let _ = out.push(b"pid ") && out.push_u32(pid);
        if !service.is_empty() {
            let _ = out.push(b", ");
        }
    }
    let _ = push_printable(out, service) && out.push(b")");
}

/// Other programs' names are not trusted to be printable.
fn push_printable(out: &mut StackBuf<256>, text: &[u8]) -> bool {
    text.iter().all(|&b| out.push(&[if b.is_ascii_graphic() || b == b' ' { b } else { b'?' }]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Text;

    fn text(s: &[u8]) -> Text {
        Text::from_json(&[b"\"", s, b"\""].concat())
    }

    fn holder(process: &[u8], pid: Option<u32>, service_type: &[u8]) -> Holder {
        Holder { process: text(process), user: text(b""), pid, service_type: text(service_type) }
    }

    #[test]
    fn the_line_names_the_holder_when_known() {
        let h = holder(b"python3", Some(4242), b"api");
        assert_eq!(
            line(8000, 8001, Some(&h)).as_bytes(),
            b"styxy: port 8000 is in use by python3 (pid 4242, api); listening on 8001 instead\n"
        );
        assert_eq!(line(8000, 8001, None).as_bytes(), b"styxy: port 8000 is in use; listening on 8001 instead\n");
        let h = holder(b"", None, b"");
        assert_eq!(line(3000, 3002, Some(&h)).as_bytes(), b"styxy: port 3000 is in use; listening on 3002 instead\n");
        let h = holder(b"no\x01de", None, b"web");
        assert_eq!(
            line(3000, 3002, Some(&h)).as_bytes(),
            b"styxy: port 3000 is in use by no?de (web); listening on 3002 instead\n"
        );
    }
}
