//! The sock_diag wire format (linux/netlink.h, linux/inet_diag.h, in the
//! machine's byte order): one definition per kernel struct, each encoded into
//! and parsed out of caller-provided bytes. Nothing here allocates or panics,
//! because the preload builds its requests and reads the answers inside other
//! programs' `bind` calls; the observer reads every listening socket of the
//! machine through the same code.

use core::fmt;

/// Netlink type of the original inet_diag request (`TCPDIAG_GETSOCK`), whose
/// dump covers IPv4 and IPv6 in one walk; its answers carry the same type.
pub const TCPDIAG_GETSOCK: u16 = 18;
/// Netlink type of the per-family request (`SOCK_DIAG_BY_FAMILY`) and of its answers.
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `TCP_LISTEN` in the kernel's TCP state numbering, as a state mask bit.
pub const TCPF_LISTEN: u32 = 1 << 10;
/// Request attribute carrying a filter program.
const INET_DIAG_REQ_BYTECODE: u16 = 1;
/// Answer attribute of IPv6 sockets: one byte, IPV6_V6ONLY.
pub const INET_DIAG_SKV6ONLY: u16 = 11;
/// Filter operations: source port ≥ / ≤ the port in the next op's `no`.
const INET_DIAG_BC_S_GE: u8 = 2;
const INET_DIAG_BC_S_LE: u8 = 3;

/// The longest request [`encode_dump`] writes: header, the larger body and a port filter.
pub const MAX_REQUEST_LEN: usize = NlMsgHeader::LEN + InetDiagReq::LEN + PORT_FILTER_LEN;
/// An rtattr and four filter ops: `sport >= lo` (two ops), `sport <= hi` (two ops).
const PORT_FILTER_LEN: usize = RtAttr::LEN + 4 * InetDiagBcOp::LEN;

/// Copies `bytes` to `buf[at..]`; None when they do not fit.
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) -> Option<()> {
    buf.get_mut(at..at.checked_add(bytes.len())?)?.copy_from_slice(bytes);
    Some(())
}

fn take<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    take(buf, at).map(u16::from_ne_bytes)
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    take(buf, at).map(u32::from_ne_bytes)
}

/// Netlink messages and attributes are padded to 4-byte boundaries.
fn align4(len: usize) -> Option<usize> {
    Some(len.checked_add(3)? & !3)
}

/// `struct nlmsghdr`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NlMsgHeader {
    /// Length of the message, header included.
    pub len: u32,
    pub kind: u16,
    pub flags: u16,
    pub sequence: u32,
    pub port_id: u32,
}

impl NlMsgHeader {
    pub const LEN: usize = 16;

    pub fn emit(&self, buf: &mut [u8]) -> Option<()> {
        put(buf, 0, &self.len.to_ne_bytes())?;
        put(buf, 4, &self.kind.to_ne_bytes())?;
        put(buf, 6, &self.flags.to_ne_bytes())?;
        put(buf, 8, &self.sequence.to_ne_bytes())?;
        put(buf, 12, &self.port_id.to_ne_bytes())
    }

    pub fn parse(buf: &[u8]) -> Option<Self> {
        // One length check; the fields' offsets are then known in bounds.
        let buf: &[u8; Self::LEN] = buf.get(..Self::LEN)?.try_into().ok()?;
        Some(NlMsgHeader {
            len: u32_at(buf, 0)?,
            kind: u16_at(buf, 4)?,
            flags: u16_at(buf, 6)?,
            sequence: u32_at(buf, 8)?,
            port_id: u32_at(buf, 12)?,
        })
    }
}

/// `struct inet_diag_sockid`. Ports are kept in host order here (the wire
/// has them big-endian); addresses are their network-order bytes, IPv4 in the
/// first four.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InetDiagSockId {
    pub sport: u16,
    pub dport: u16,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub interface: u32,
    pub cookie: [u32; 2],
}

impl InetDiagSockId {
    pub const LEN: usize = 48;

    pub fn emit(&self, buf: &mut [u8]) -> Option<()> {
        put(buf, 0, &self.sport.to_be_bytes())?;
        put(buf, 2, &self.dport.to_be_bytes())?;
        put(buf, 4, &self.src)?;
        put(buf, 20, &self.dst)?;
        put(buf, 36, &self.interface.to_ne_bytes())?;
        put(buf, 40, &self.cookie[0].to_ne_bytes())?;
        put(buf, 44, &self.cookie[1].to_ne_bytes())
    }

    pub fn parse(buf: &[u8]) -> Option<Self> {
        let buf: &[u8; Self::LEN] = buf.get(..Self::LEN)?.try_into().ok()?;
        Some(InetDiagSockId {
            sport: u16::from_be_bytes(take(buf, 0)?),
            dport: u16::from_be_bytes(take(buf, 2)?),
            src: take(buf, 4)?,
            dst: take(buf, 20)?,
            interface: u32_at(buf, 36)?,
            cookie: [u32_at(buf, 40)?, u32_at(buf, 44)?],
        })
    }
}

/// The body of a dump request, and the netlink type that carries it.
pub trait DumpRequest {
    const KIND: u16;
    const LEN: usize;
    fn emit(&self, buf: &mut [u8]) -> Option<()>;
}

/// `struct inet_diag_req`, sent as [`TCPDIAG_GETSOCK`]: a dump ignores the
/// family and covers IPv4 and IPv6 in one walk of the listening table; a
/// nonzero `id.sport` has the kernel skip other ports undescribed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InetDiagReq {
    pub family: u8,
    pub src_len: u8,
    pub dst_len: u8,
    pub ext: u8,
    pub id: InetDiagSockId,
    pub states: u32,
    pub dbs: u32,
}

impl DumpRequest for InetDiagReq {
    const KIND: u16 = TCPDIAG_GETSOCK;
    const LEN: usize = 60;

    fn emit(&self, buf: &mut [u8]) -> Option<()> {
        put(buf, 0, &[self.family, self.src_len, self.dst_len, self.ext])?;
        self.id.emit(buf.get_mut(4..)?)?;
        put(buf, 52, &self.states.to_ne_bytes())?;
        put(buf, 56, &self.dbs.to_ne_bytes())
    }
}

/// `struct inet_diag_req_v2`, sent as [`SOCK_DIAG_BY_FAMILY`]: one family per
/// request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InetDiagReqV2 {
    pub family: u8,
    pub protocol: u8,
    pub ext: u8,
    pub states: u32,
    pub id: InetDiagSockId,
}

impl DumpRequest for InetDiagReqV2 {
    const KIND: u16 = SOCK_DIAG_BY_FAMILY;
    const LEN: usize = 56;

    fn emit(&self, buf: &mut [u8]) -> Option<()> {
        put(buf, 0, &[self.family, self.protocol, self.ext, 0])?;
        put(buf, 4, &self.states.to_ne_bytes())?;
        self.id.emit(buf.get_mut(8..)?)
    }
}

/// `struct inet_diag_msg`: one socket of an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InetDiagMsg {
    pub family: u8,
    pub state: u8,
    pub timer: u8,
    pub retrans: u8,
    pub id: InetDiagSockId,
    pub expires: u32,
    pub rqueue: u32,
    pub wqueue: u32,
    /// The socket's owner (the creating process's effective uid).
    pub uid: u32,
    pub inode: u32,
}

impl InetDiagMsg {
    pub const LEN: usize = 72;

    pub fn emit(&self, buf: &mut [u8]) -> Option<()> {
        put(buf, 0, &[self.family, self.state, self.timer, self.retrans])?;
        self.id.emit(buf.get_mut(4..)?)?;
        put(buf, 52, &self.expires.to_ne_bytes())?;
        put(buf, 56, &self.rqueue.to_ne_bytes())?;
        put(buf, 60, &self.wqueue.to_ne_bytes())?;
        put(buf, 64, &self.uid.to_ne_bytes())?;
        put(buf, 68, &self.inode.to_ne_bytes())
    }

    pub fn parse(buf: &[u8]) -> Option<Self> {
        let buf: &[u8; Self::LEN] = buf.get(..Self::LEN)?.try_into().ok()?;
        let [family, state, timer, retrans] = take(buf, 0)?;
        Some(InetDiagMsg {
            family,
            state,
            timer,
            retrans,
            id: InetDiagSockId::parse(buf.get(4..)?)?,
            expires: u32_at(buf, 52)?,
            rqueue: u32_at(buf, 56)?,
            wqueue: u32_at(buf, 60)?,
            uid: u32_at(buf, 64)?,
            inode: u32_at(buf, 68)?,
        })
    }
}

/// `struct rtattr`: the header of an attribute; `len` includes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtAttr {
    pub len: u16,
    pub kind: u16,
}

impl RtAttr {
    pub const LEN: usize = 4;

    pub fn emit(&self, buf: &mut [u8]) -> Option<()> {
        put(buf, 0, &self.len.to_ne_bytes())?;
        put(buf, 2, &self.kind.to_ne_bytes())
    }

    pub fn parse(buf: &[u8]) -> Option<Self> {
        Some(RtAttr { len: u16_at(buf, 0)?, kind: u16_at(buf, 2)? })
    }
}

/// `struct inet_diag_bc_op`: one filter instruction. On a match the program
/// goes `yes` bytes on, else `no` bytes; landing exactly on the end accepts
/// the socket, beyond it rejects. A port test is two ops, the port in the
/// second one's `no`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InetDiagBcOp {
    pub code: u8,
    pub yes: u8,
    pub no: u16,
}

impl InetDiagBcOp {
    pub const LEN: usize = 4;

    pub fn emit(&self, buf: &mut [u8]) -> Option<()> {
        put(buf, 0, &[self.code, self.yes])?;
        put(buf, 2, &self.no.to_ne_bytes())
    }
}

/// Writes a dump request for `body` into `buf` (at least
/// [`MAX_REQUEST_LEN`] bytes serve any request). With `sports`, a filter
/// program has the kernel describe only sockets whose source port lies in
/// that inclusive range. The request's bytes; None when `buf` is too short.
pub fn encode_dump<'b, R: DumpRequest>(
    buf: &'b mut [u8],
    sequence: u32,
    body: &R,
    sports: Option<(u16, u16)>,
) -> Option<&'b [u8]> {
    let filter = if sports.is_some() { PORT_FILTER_LEN } else { 0 };
    let len = NlMsgHeader::LEN.checked_add(R::LEN)?.checked_add(filter)?;
    let header = NlMsgHeader {
        len: u32::try_from(len).ok()?,
        kind: R::KIND,
        flags: (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
        sequence,
        port_id: 0,
    };
    let buf = buf.get_mut(..len)?;
    header.emit(buf)?;
    body.emit(buf.get_mut(NlMsgHeader::LEN..)?)?;
    if let Some((lo, hi)) = sports {
        emit_port_filter(buf.get_mut(NlMsgHeader::LEN.checked_add(R::LEN)?..)?, lo, hi)?;
    }
    Some(buf)
}

/// `sport >= lo && sport <= hi`: a failed test jumps past the end (reject),
/// passing both lands on the end (accept).
fn emit_port_filter(buf: &mut [u8], lo: u16, hi: u16) -> Option<()> {
    const OP: u8 = InetDiagBcOp::LEN as u8;
    let ops = [
        InetDiagBcOp { code: INET_DIAG_BC_S_GE, yes: 2 * OP, no: 5 * OP as u16 },
        InetDiagBcOp { code: 0, yes: 0, no: lo },
        InetDiagBcOp { code: INET_DIAG_BC_S_LE, yes: 2 * OP, no: 3 * OP as u16 },
        InetDiagBcOp { code: 0, yes: 0, no: hi },
    ];
    RtAttr { len: PORT_FILTER_LEN as u16, kind: INET_DIAG_REQ_BYTECODE }.emit(buf)?;
    for (i, op) in ops.iter().enumerate() {
        op.emit(buf.get_mut(RtAttr::LEN.checked_add(i.checked_mul(InetDiagBcOp::LEN)?)?..)?)?;
    }
    Some(())
}

/// Sends a request to the kernel on a NETLINK_SOCK_DIAG socket; false when
/// it was not sent (errno says why).
pub fn send_to_kernel(fd: libc::c_int, request: &[u8]) -> bool {
    // SAFETY: sockaddr_nl is plain data; all-zero (pid 0) addresses the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { core::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: request and kernel are readable for the lengths passed.
    let sent = unsafe {
        libc::sendto(
            fd,
            request.as_ptr().cast(),
            request.len(),
            0,
            (&raw const kernel).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    sent >= 0
}

/// One socket of a dump's answer: its fixed part and its attributes.
#[derive(Debug, Clone, Copy)]
pub struct Socket<'a> {
    pub msg: InetDiagMsg,
    pub attributes: &'a [u8],
}

impl Socket<'_> {
    /// The payload of the first attribute of this kind.
    pub fn attribute(&self, kind: u16) -> Option<&[u8]> {
        let mut rest = self.attributes;
        loop {
            let attr = RtAttr::parse(rest)?;
            let len = usize::from(attr.len);
            let payload = rest.get(RtAttr::LEN..len)?;
            if attr.kind == kind {
                return Some(payload);
            }
            rest = rest.get(align4(len)?..)?;
        }
    }

    /// Whether an IPv6 socket has IPV6_V6ONLY; None without the attribute.
    pub fn v6only(&self) -> Option<bool> {
        self.attribute(INET_DIAG_SKV6ONLY)?.first().map(|&b| b != 0)
    }
}

/// What one `recv` worth of netlink messages says about the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// The dump goes on in the next datagram.
    More,
    Done,
    /// The kernel refused the request with this errno.
    Failed(i32),
}

/// Bytes that cannot be a dump's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// A message's length is below its header's or beyond the bytes left.
    MessageLength { len: usize, left: usize },
    /// An NLMSG_ERROR without its errno.
    ShortError,
    /// A socket answer shorter than inet_diag_msg.
    ShortSocket { len: usize },
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::MessageLength { len, left } => write!(f, "message length {len} with {left} bytes left"),
            Malformed::ShortError => f.write_str("short NLMSG_ERROR"),
            Malformed::ShortSocket { len } => write!(f, "inet_diag_msg of {len} bytes"),
        }
    }
}

impl std::error::Error for Malformed {}

/// Walks the netlink messages of one datagram of a dump's answer, calling
/// `on_socket` for each socket. Messages of another sequence (left over from
/// an interrupted earlier dump) are skipped. Stops at the first error of
/// `on_socket`.
pub fn parse_batch<E: From<Malformed>>(
    mut bytes: &[u8],
    sequence: u32,
    mut on_socket: impl FnMut(Socket<'_>) -> Result<(), E>,
) -> Result<Batch, E> {
    while let Some(header) = NlMsgHeader::parse(bytes) {
        let len = header.len as usize;
        let Some(payload) = bytes.get(NlMsgHeader::LEN..len) else {
            return Err(Malformed::MessageLength { len, left: bytes.len() }.into());
        };
        if header.sequence == sequence {
            match i32::from(header.kind) {
                libc::NLMSG_DONE => return Ok(Batch::Done),
                libc::NLMSG_ERROR => {
                    // nlmsgerr starts with a negative errno; 0 is an acknowledgement.
                    let errno = take(payload, 0).map(i32::from_ne_bytes).ok_or(Malformed::ShortError)?;
                    return Ok(if errno == 0 { Batch::Done } else { Batch::Failed(errno.saturating_neg()) });
                }
                _ if header.kind == TCPDIAG_GETSOCK || header.kind == SOCK_DIAG_BY_FAMILY => {
                    let msg = InetDiagMsg::parse(payload).ok_or(Malformed::ShortSocket { len: payload.len() })?;
                    on_socket(Socket { msg, attributes: payload.get(InetDiagMsg::LEN..).unwrap_or(&[]) })?;
                }
                _ => {}
            }
        }
        bytes = bytes.get(align4(len).unwrap_or(usize::MAX)..).unwrap_or(&[]);
    }
    Ok(Batch::More)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One netlink message around `payload`, padded as the kernel pads it.
    fn message(kind: u16, sequence: u32, payload: &[u8]) -> Vec<u8> {
        let len = NlMsgHeader::LEN + payload.len();
        let mut bytes = vec![0; len];
        NlMsgHeader { len: len as u32, kind, flags: 0, sequence, port_id: 0 }.emit(&mut bytes).unwrap();
        bytes[NlMsgHeader::LEN..].copy_from_slice(payload);
        bytes.resize(align4(len).unwrap(), 0);
        bytes
    }

    fn socket(msg: &InetDiagMsg, v6only: Option<bool>) -> Vec<u8> {
        let mut payload = vec![0; InetDiagMsg::LEN];
        msg.emit(&mut payload).unwrap();
        if let Some(v6only) = v6only {
            let mut attr = [0u8; 8];
            RtAttr { len: 5, kind: INET_DIAG_SKV6ONLY }.emit(&mut attr).unwrap();
            attr[4] = u8::from(v6only);
            payload.extend_from_slice(&attr);
        }
        payload
    }

    /// A socket as the parser reports it: its fixed part and its IPV6_V6ONLY.
    type Parsed = (InetDiagMsg, Option<bool>);

    fn sockets_of(bytes: &[u8], sequence: u32) -> (Result<Batch, Malformed>, Vec<Parsed>) {
        let mut found = Vec::new();
        let batch = parse_batch(bytes, sequence, |s: Socket<'_>| {
            found.push((s.msg, s.v6only()));
            Ok::<(), Malformed>(())
        });
        (batch, found)
    }

    #[test]
    fn a_port_range_request_is_the_kernels_layout() {
        let mut buf = [0u8; MAX_REQUEST_LEN];
        let body = InetDiagReqV2 {
            family: libc::AF_INET6 as u8,
            protocol: libc::IPPROTO_TCP as u8,
            states: TCPF_LISTEN,
            ..InetDiagReqV2::default()
        };
        let req = encode_dump(&mut buf, 0, &body, Some((8000, 8127))).unwrap();
        let mut expected = vec![];
        expected.extend_from_slice(&92u32.to_ne_bytes());
        expected.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        expected.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
        expected.extend_from_slice(&[0; 8]);
        expected.extend_from_slice(&[libc::AF_INET6 as u8, libc::IPPROTO_TCP as u8, 0, 0]);
        expected.extend_from_slice(&TCPF_LISTEN.to_ne_bytes());
        expected.extend_from_slice(&[0; 48]);
        for half in [20u16, 1, 0x0802, 20, 0, 8000, 0x0803, 12, 0, 8127] {
            expected.extend_from_slice(&half.to_ne_bytes());
        }
        // The ops' first two bytes are {code, yes}, not a u16.
        expected[76..78].copy_from_slice(&[INET_DIAG_BC_S_GE, 8]);
        expected[84..86].copy_from_slice(&[INET_DIAG_BC_S_LE, 8]);
        assert_eq!(req, &expected[..]);
    }

    #[test]
    fn a_per_port_request_carries_the_port_big_endian() {
        let mut buf = [0u8; MAX_REQUEST_LEN];
        let id = InetDiagSockId { sport: 0x1f90, ..InetDiagSockId::default() };
        let body = InetDiagReq { family: libc::AF_INET as u8, states: TCPF_LISTEN, id, ..InetDiagReq::default() };
        let req = encode_dump(&mut buf, 9, &body, None).unwrap();
        assert_eq!(req.len(), 76);
        assert_eq!(NlMsgHeader::parse(req).unwrap().kind, TCPDIAG_GETSOCK);
        assert_eq!(NlMsgHeader::parse(req).unwrap().sequence, 9);
        assert_eq!(&req[20..22], &[0x1f, 0x90]);
        assert_eq!(&req[68..72], &TCPF_LISTEN.to_ne_bytes());
        assert!(encode_dump(&mut [0u8; 75], 9, &body, None).is_none());
    }

    #[test]
    fn errors_acknowledgements_and_truncation() {
        let error = message(libc::NLMSG_ERROR as u16, 1, &(-libc::EPERM).to_ne_bytes());
        assert_eq!(sockets_of(&error, 1).0, Ok(Batch::Failed(libc::EPERM)));
        let ack = message(libc::NLMSG_ERROR as u16, 1, &0i32.to_ne_bytes());
        assert_eq!(sockets_of(&ack, 1).0, Ok(Batch::Done));
        assert_eq!(sockets_of(&message(libc::NLMSG_ERROR as u16, 1, &[]), 1).0, Err(Malformed::ShortError));
        let mut truncated = message(TCPDIAG_GETSOCK, 1, &[0; 8]);
        truncated.truncate(20);
        assert_eq!(sockets_of(&truncated, 1).0, Err(Malformed::MessageLength { len: 24, left: 20 }));
        let short = message(TCPDIAG_GETSOCK, 1, &[0; 8]);
        assert_eq!(sockets_of(&short, 1).0, Err(Malformed::ShortSocket { len: 8 }));
    }

    fn any_msg() -> impl Strategy<Value = InetDiagMsg> {
        let id = (any::<u16>(), any::<u16>(), any::<[u8; 16]>(), any::<[u8; 16]>(), any::<u32>(), any::<[u32; 2]>())
            .prop_map(|(sport, dport, src, dst, interface, cookie)| InetDiagSockId {
                sport,
                dport,
                src,
                dst,
                interface,
                cookie,
            });
        (any::<[u8; 4]>(), id, any::<[u32; 5]>()).prop_map(|([family, state, timer, retrans], id, words)| {
            let [expires, rqueue, wqueue, uid, inode] = words;
            InetDiagMsg { family, state, timer, retrans, id, expires, rqueue, wqueue, uid, inode }
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), sequence in 0u32..3) {
            let (_, found) = sockets_of(&bytes, sequence);
            prop_assert!(found.len() <= bytes.len() / (NlMsgHeader::LEN + InetDiagMsg::LEN));
        }

        /// Random bytes seldom get past the first header; a damaged answer does.
        #[test]
        fn damaged_answers_never_panic(
            sockets in proptest::collection::vec((any_msg(), any::<Option<bool>>()), 1..6),
            damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = Vec::new();
            for (msg, v6only) in &sockets {
                bytes.extend(message(SOCK_DIAG_BY_FAMILY, 0, &socket(msg, *v6only)));
            }
            bytes.extend(message(libc::NLMSG_DONE as u16, 0, &[0; 4]));
            for (at, byte) in damage {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            let (_, found) = sockets_of(&bytes, 0);
            prop_assert!(found.len() <= bytes.len() / (NlMsgHeader::LEN + InetDiagMsg::LEN));
        }

        #[test]
        fn sockets_come_back_as_sent_and_other_sequences_are_skipped(
            sockets in proptest::collection::vec((any_msg(), any::<Option<bool>>(), any::<bool>()), 0..20),
            kind in prop_oneof![Just(TCPDIAG_GETSOCK), Just(SOCK_DIAG_BY_FAMILY)],
            done in any::<bool>(),
        ) {
            let mut bytes = Vec::new();
            let mut expected = Vec::new();
            for (msg, v6only, stale) in &sockets {
                bytes.extend(message(kind, if *stale { 6 } else { 7 }, &socket(msg, *v6only)));
                if !stale {
                    expected.push((*msg, *v6only));
                }
            }
            if done {
                bytes.extend(message(libc::NLMSG_DONE as u16, 7, &[0; 4]));
            }
            let (batch, found) = sockets_of(&bytes, 7);
            prop_assert_eq!(batch, Ok(if done { Batch::Done } else { Batch::More }));
            prop_assert_eq!(found, expected);
        }
    }
}
