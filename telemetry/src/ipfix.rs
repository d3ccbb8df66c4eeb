//! IPFIX (RFC 7011) flow export over UDP: one template for IPv4 flows and one for IPv6,
//! resent on a period (UDP loses them, and collectors forget them on restart), and data
//! records packed into messages that fit a 1500-byte path.
//!
//! The exporter runs on its own thread (`sluice-ipfix`) behind a bounded queue: the
//! control thread hands over records with `try_send` and counts what did not fit, so a
//! slow or absent collector never holds it up. The thread paces its datagrams so a burst
//! of ended flows (a table of millions at shutdown) does not overrun the collector's
//! socket buffer.
//!
//! Standard information elements carry the 5-tuple, VLANs, interfaces (port index + 1),
//! DSCP in and out (as the ToS byte), packet and byte counts (deltas: a long flow is
//! exported again at each active timeout with what it carried since), start and end in
//! milliseconds, the end reason and the path's next hop. Sluice's own elements (class,
//! path and cloud names, variable-length strings) use enterprise number 32473, the number
//! RFC 5612 sets aside for documentation, until Sluice has one of its own.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The enterprise number of Sluice's own information elements.
pub const ENTERPRISE: u32 = 32473;
pub const TEMPLATE_V4: u16 = 256;
pub const TEMPLATE_V6: u16 = 257;
/// The largest message: a 1500-byte MTU less IPv6 and UDP headers.
const MAX_MESSAGE: usize = 1452;
const HEADER: usize = 16;
/// Records waiting for the exporter thread, at most.
pub const QUEUE: usize = 65_536;
/// Datagrams a second, at most (about 380 000 IPv4 records).
const MESSAGES_PER_S: u64 = 20_000;

/// Why a flow record was exported (IE 136, flowEndReason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EndReason {
    Idle = 1,
    Active = 2,
    /// FIN or RST seen.
    EndOfFlow = 3,
    /// Still live when the appliance stopped.
    Forced = 4,
    /// Evicted from a full table.
    LackOfResources = 5,
}

/// One flow record, as the exporters take it.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRecord {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    /// Outer and inner (QinQ) VLAN IDs, 0 when absent.
    pub vlan: u16,
    pub inner_vlan: u16,
    /// Port index + 1; 0 for none (the flow was never sent).
    pub in_if: u32,
    pub out_if: u32,
    pub dscp_in: u8,
    pub dscp_out: u8,
    pub packets: u64,
    pub bytes: u64,
    /// Unix time in milliseconds.
    pub start_ms: u64,
    pub end_ms: u64,
    pub reason: EndReason,
    /// The path's next hop, if the flow had a path.
    pub next_hop: Option<IpAddr>,
    pub class: Arc<str>,
    pub path: Arc<str>,
    pub cloud: Arc<str>,
}

/// (element id, length; 0xffff is variable) of each template, in order. Ids with the top
/// bit set are Sluice's own (enterprise 32473).
const ENTERPRISE_BIT: u16 = 0x8000;
const VARLEN: u16 = 0xffff;
fn template(v6: bool) -> [(u16, u16); 21] {
    let (src, dst, hop, alen) = if v6 { (27, 28, 62, 16) } else { (8, 12, 15, 4) };
    [
        (src, alen),
        (dst, alen),
        (7, 2),   // sourceTransportPort
        (11, 2),  // destinationTransportPort
        (4, 1),   // protocolIdentifier
        (5, 1),   // ipClassOfService (DSCP in << 2)
        (55, 1),  // postIpClassOfService (DSCP out << 2)
        (58, 2),  // vlanId
        (245, 2), // dot1qCustomerVlanId
        (10, 4),  // ingressInterface
        (14, 4),  // egressInterface
        (1, 8),   // octetDeltaCount
        (2, 8),   // packetDeltaCount
        (152, 8), // flowStartMilliseconds
        (153, 8), // flowEndMilliseconds
        (136, 1), // flowEndReason
        (hop, alen),
        (ENTERPRISE_BIT | 1, VARLEN), // class name
        (ENTERPRISE_BIT | 2, VARLEN), // path name
        (ENTERPRISE_BIT | 3, VARLEN), // cloud
        (ENTERPRISE_BIT | 4, 1),      // address family (4 or 6), for collectors that skip the rest
    ]
}

fn put_template(out: &mut Vec<u8>, id: u16, v6: bool) {
    let fields = template(v6);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    for (ie, len) in fields {
        out.extend_from_slice(&ie.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        if ie & ENTERPRISE_BIT != 0 {
            out.extend_from_slice(&ENTERPRISE.to_be_bytes());
        }
    }
}

fn put_addr(out: &mut Vec<u8>, a: Option<IpAddr>, v6: bool) {
    match (a, v6) {
        (Some(IpAddr::V4(a)), false) => out.extend_from_slice(&a.octets()),
        (Some(IpAddr::V6(a)), true) => out.extend_from_slice(&a.octets()),
        // A next hop of the other family (or none) is the unspecified address.
        (_, false) => out.extend_from_slice(&[0; 4]),
        (_, true) => out.extend_from_slice(&[0; 16]),
    }
}

/// A string as a variable-length field (RFC 7011 section 7), cut at 255 bytes on a
/// character boundary.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut n = s.len().min(255);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    out.push(n as u8);
    out.extend_from_slice(&s.as_bytes()[..n]);
}

/// Appends the data record of `r`; whether it uses the IPv6 template.
pub fn put_record(out: &mut Vec<u8>, r: &FlowRecord) -> bool {
    let v6 = r.src.is_ipv6();
    put_addr(out, Some(r.src), v6);
    put_addr(out, Some(r.dst), v6);
    out.extend_from_slice(&r.src_port.to_be_bytes());
    out.extend_from_slice(&r.dst_port.to_be_bytes());
    out.push(r.proto);
    out.push(r.dscp_in << 2);
    out.push(r.dscp_out << 2);
    out.extend_from_slice(&r.vlan.to_be_bytes());
    out.extend_from_slice(&r.inner_vlan.to_be_bytes());
    out.extend_from_slice(&r.in_if.to_be_bytes());
    out.extend_from_slice(&r.out_if.to_be_bytes());
    out.extend_from_slice(&r.bytes.to_be_bytes());
    out.extend_from_slice(&r.packets.to_be_bytes());
    out.extend_from_slice(&r.start_ms.to_be_bytes());
    out.extend_from_slice(&r.end_ms.to_be_bytes());
    out.push(r.reason as u8);
    put_addr(out, r.next_hop, v6);
    put_str(out, &r.class);
    put_str(out, &r.path);
    put_str(out, &r.cloud);
    out.push(if v6 { 6 } else { 4 });
    v6
}

/// Builds messages: a header, the templates when due, then data sets.
pub struct Messages {
    domain: u32,
    /// Data records in messages finished so far (the next header's sequence number).
    sequence: u32,
    msg: Vec<u8>,
    /// Records in `msg`, and where its open data set starts and with which template.
    in_msg: u32,
    set: Option<(usize, u16)>,
    record: Vec<u8>,
    templates_due: bool,
}

impl Messages {
    pub fn new(domain: u32) -> Messages {
        Messages {
            domain,
            sequence: 0,
            msg: Vec::with_capacity(MAX_MESSAGE),
            in_msg: 0,
            set: None,
            record: Vec::with_capacity(600),
            templates_due: true,
        }
    }

    /// The next message carries the templates.
    pub fn send_templates(&mut self) {
        self.templates_due = true;
    }

    fn begin(&mut self) {
        self.msg.clear();
        self.msg.extend_from_slice(&[0; HEADER]);
        if self.templates_due {
            self.templates_due = false;
            let at = self.msg.len();
            self.msg.extend_from_slice(&[0, 2, 0, 0]); // template set, length below
            put_template(&mut self.msg, TEMPLATE_V4, false);
            put_template(&mut self.msg, TEMPLATE_V6, true);
            let len = (self.msg.len() - at) as u16;
            self.msg[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
        }
    }

    fn close_set(&mut self) {
        if let Some((at, _)) = self.set.take() {
            let len = (self.msg.len() - at) as u16;
            self.msg[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
        }
    }

    /// Adds `r`; returns a finished message when `r` did not fit in the open one (`r` then
    /// starts the next).
    pub fn add(&mut self, r: &FlowRecord, now_s: u32) -> Option<Vec<u8>> {
        self.record.clear();
        let v6 = put_record(&mut self.record, r);
        let id = if v6 { TEMPLATE_V6 } else { TEMPLATE_V4 };
        let mut done = None;
        let set_len = if self.set.is_some_and(|(_, s)| s == id) { 0 } else { 4 };
        if !self.msg.is_empty() && self.msg.len() + set_len + self.record.len() > MAX_MESSAGE {
            done = self.finish(now_s);
        }
        if self.msg.is_empty() {
            self.begin();
        }
        if self.set.is_none_or(|(_, s)| s != id) {
            self.close_set();
            self.set = Some((self.msg.len(), id));
            self.msg.extend_from_slice(&id.to_be_bytes());
            self.msg.extend_from_slice(&[0, 0]);
        }
        self.msg.extend_from_slice(&self.record);
        self.in_msg += 1;
        done
    }

    /// The open message, finished (None when it holds nothing to send).
    pub fn finish(&mut self, now_s: u32) -> Option<Vec<u8>> {
        if self.msg.is_empty() && !self.templates_due {
            return None;
        }
        if self.msg.is_empty() {
            self.begin();
        }
        self.close_set();
        let len = self.msg.len() as u16;
        let h = &mut self.msg[..HEADER];
        h[0..2].copy_from_slice(&10u16.to_be_bytes());
        h[2..4].copy_from_slice(&len.to_be_bytes());
        h[4..8].copy_from_slice(&now_s.to_be_bytes());
        h[8..12].copy_from_slice(&self.sequence.to_be_bytes());
        h[12..16].copy_from_slice(&self.domain.to_be_bytes());
        self.sequence = self.sequence.wrapping_add(self.in_msg);
        self.in_msg = 0;
        let out = std::mem::replace(&mut self.msg, Vec::with_capacity(MAX_MESSAGE));
        Some(out)
    }

    /// Records in the open message.
    pub fn pending(&self) -> u32 {
        self.in_msg
    }
}

/// What the exporter has done, for the metrics.
#[derive(Debug, Default)]
pub struct IpfixStats {
    pub records: AtomicU64,
    pub messages: AtomicU64,
    /// Records that never left: the queue was full, or the datagram could not be sent.
    pub dropped: AtomicU64,
}

/// Settings of the exporter.
#[derive(Debug, Clone)]
pub struct IpfixConfig {
    pub collector: SocketAddr,
    pub domain: u32,
    /// How often the templates are sent again.
    pub template_every: Duration,
    /// The longest a record waits for its message to fill.
    pub flush_every: Duration,
}

/// The exporter thread and its queue.
pub struct Ipfix {
    tx: Option<SyncSender<FlowRecord>>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<IpfixStats>,
    collector: SocketAddr,
}

fn unix_s() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

impl Ipfix {
    /// Opens a UDP socket towards the collector and starts the thread.
    pub fn start(cfg: IpfixConfig) -> std::io::Result<Ipfix> {
        let bind: SocketAddr = if cfg.collector.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(bind)?;
        sock.connect(cfg.collector)?;
        let stats = Arc::new(IpfixStats::default());
        let (tx, rx) = sync_channel(QUEUE);
        let st = Arc::clone(&stats);
        let collector = cfg.collector;
        let thread = std::thread::Builder::new()
            .name("sluice-ipfix".into())
            .spawn(move || export(&sock, &cfg, &rx, &st))?;
        Ok(Ipfix {
            tx: Some(tx),
            thread: Some(thread),
            stats,
            collector,
        })
    }

    pub fn collector(&self) -> SocketAddr {
        self.collector
    }

    /// Queues a record; when the queue is full it is dropped and counted.
    pub fn send(&self, r: FlowRecord) {
        let sent = match &self.tx {
            Some(tx) => !matches!(
                tx.try_send(r),
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_))
            ),
            None => false,
        };
        if !sent {
            self.stats.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Queues a record, waiting for room until `deadline` (for the last records at
    /// shutdown); dropped and counted after it.
    pub fn send_until(&self, r: FlowRecord, deadline: Instant) {
        let Some(tx) = &self.tx else {
            self.stats.dropped.fetch_add(1, Relaxed);
            return;
        };
        let mut r = r;
        loop {
            match tx.try_send(r) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    r = back;
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err(_) => {
                    self.stats.dropped.fetch_add(1, Relaxed);
                    return;
                }
            }
        }
    }

    /// Sends what is queued and stops the thread, waiting at most `limit` (what is still
    /// queued then is dropped and counted).
    pub fn stop(&mut self, limit: Duration) {
        drop(self.tx.take());
        let Some(t) = self.thread.take() else { return };
        let deadline = Instant::now() + limit;
        // Left to finish on its own if late; it holds nothing but its socket.
        if !crate::join_by(t, deadline) {
            log::warn!(target: "telemetry", "IPFIX export to {} did not finish in {limit:?}", self.collector);
        }
    }
}

impl Drop for Ipfix {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// The thread: records into messages, paced datagrams out, templates on their period.
fn export(sock: &UdpSocket, cfg: &IpfixConfig, rx: &Receiver<FlowRecord>, st: &IpfixStats) {
    let mut m = Messages::new(cfg.domain);
    let gap = Duration::from_nanos(1_000_000_000 / MESSAGES_PER_S);
    let mut next_send = Instant::now();
    let mut send = |msg: Vec<u8>, records: u32| {
        let now = Instant::now();
        if next_send > now {
            std::thread::sleep(next_send - now);
        }
        next_send = next_send.max(now) + gap;
        match sock.send(&msg) {
            Ok(_) => {
                st.messages.fetch_add(1, Relaxed);
                st.records.fetch_add(records as u64, Relaxed);
            }
            // Nobody listening (ICMP port unreachable) or no route: these records are lost.
            Err(_) => {
                st.dropped.fetch_add(records as u64, Relaxed);
            }
        }
    };
    let mut first_pending: Option<Instant> = None;
    let mut templates_at: Option<Instant> = None;
    loop {
        // Templates go out at start and on their period, alone if no record is waiting.
        if templates_at.is_none_or(|t| t.elapsed() >= cfg.template_every) {
            templates_at = Some(Instant::now());
            m.send_templates();
            if m.pending() == 0 {
                if let Some(msg) = m.finish(unix_s()) {
                    send(msg, 0);
                }
            }
        }
        let wait = first_pending.map_or(cfg.flush_every, |t| cfg.flush_every.saturating_sub(t.elapsed()));
        match rx.recv_timeout(wait.max(Duration::from_millis(1))) {
            Ok(r) => {
                let before = m.pending();
                if let Some(msg) = m.add(&r, unix_s()) {
                    send(msg, before);
                    first_pending = None;
                }
                first_pending.get_or_insert_with(Instant::now);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let n = m.pending();
                if n > 0 {
                    if let Some(msg) = m.finish(unix_s()) {
                        send(msg, n);
                    }
                }
                return;
            }
        }
        // A record waits at most `flush_every` for its message to fill.
        if first_pending.is_some_and(|t| t.elapsed() >= cfg.flush_every) {
            let n = m.pending();
            if let Some(msg) = m.finish(unix_s()) {
                send(msg, n);
            }
            first_pending = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u32, v6: bool) -> FlowRecord {
        let (src, dst): (IpAddr, IpAddr) = if v6 {
            (
                format!("2001:db8::{i:x}").parse().unwrap(),
                "2001:db8:1::1".parse().unwrap(),
            )
        } else {
            (
                std::net::Ipv4Addr::from(0x0a00_0000 + i).into(),
                "198.51.100.7".parse().unwrap(),
            )
        };
        FlowRecord {
            src,
            dst,
            src_port: 1000 + i as u16,
            dst_port: 53,
            proto: 17,
            vlan: 10,
            inner_vlan: 0,
            in_if: 1,
            out_if: 2,
            dscp_in: 46,
            dscp_out: 10,
            packets: 3,
            bytes: 300,
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_001_000,
            reason: EndReason::Idle,
            next_hop: Some("100.64.0.2".parse().unwrap()),
            class: "gold".into(),
            path: "aws".into(),
            cloud: "aws".into(),
        }
    }

    /// (set id, set body) of each set of a message, after checking its header.
    fn sets(msg: &[u8]) -> (u32, Vec<(u16, Vec<u8>)>) {
        assert_eq!(u16::from_be_bytes([msg[0], msg[1]]), 10);
        assert_eq!(u16::from_be_bytes([msg[2], msg[3]]) as usize, msg.len());
        assert!(msg.len() <= MAX_MESSAGE);
        assert_eq!(u32::from_be_bytes(msg[12..16].try_into().unwrap()), 7, "domain");
        let seq = u32::from_be_bytes(msg[8..12].try_into().unwrap());
        let mut out = Vec::new();
        let mut at = HEADER;
        while at < msg.len() {
            let id = u16::from_be_bytes([msg[at], msg[at + 1]]);
            let len = u16::from_be_bytes([msg[at + 2], msg[at + 3]]) as usize;
            assert!(len >= 4 && at + len <= msg.len());
            out.push((id, msg[at + 4..at + len].to_vec()));
            at += len;
        }
        (seq, out)
    }

    /// Decodes the data records of a set by the template's field lengths.
    fn records(body: &[u8], v6: bool) -> Vec<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < body.len() {
            let mut fields = Vec::new();
            for (_, len) in template(v6) {
                let n = if len == VARLEN {
                    at += 1;
                    body[at - 1] as usize
                } else {
                    len as usize
                };
                fields.push(body[at..at + n].to_vec());
                at += n;
            }
            out.push(fields);
        }
        out
    }

    #[test]
    fn templates_then_records_with_sequence_numbers() {
        let mut m = Messages::new(7);
        let mut msgs = Vec::new();
        for i in 0..100 {
            if let Some(x) = m.add(&record(i, i % 10 == 9), 1) {
                msgs.push(x);
            }
        }
        msgs.extend(m.finish(1));
        assert!(msgs.len() > 3, "{} messages", msgs.len());
        let mut seen = 0u32;
        for (k, msg) in msgs.iter().enumerate() {
            let (seq, sets) = sets(msg);
            assert_eq!(seq, seen, "message {k}");
            for (id, body) in &sets {
                match *id {
                    2 => {
                        assert_eq!(k, 0, "templates only in the first message");
                        assert_eq!(u16::from_be_bytes([body[0], body[1]]), TEMPLATE_V4);
                        assert_eq!(u16::from_be_bytes([body[2], body[3]]), 21);
                        // sourceIPv4Address, 4 bytes, first.
                        assert_eq!(&body[4..8], &[0, 8, 0, 4]);
                    }
                    TEMPLATE_V4 | TEMPLATE_V6 => {
                        let v6 = *id == TEMPLATE_V6;
                        for f in records(body, v6) {
                            let i = u16::from_be_bytes([f[2][0], f[2][1]]) as u32 - 1000;
                            assert_eq!(i % 10 == 9, v6, "record {i} in the right set");
                            assert_eq!(f[5], [46 << 2]);
                            assert_eq!(u64::from_be_bytes(f[11].clone().try_into().unwrap()), 300);
                            assert_eq!(u64::from_be_bytes(f[12].clone().try_into().unwrap()), 3);
                            assert_eq!(f[17], b"gold");
                            assert_eq!(f[20], [if v6 { 6 } else { 4 }]);
                            seen += 1;
                        }
                    }
                    other => panic!("set {other}"),
                }
            }
        }
        assert_eq!(seen, 100);
        // Templates again when asked, alone if nothing waits.
        m.send_templates();
        let (_, s) = sets(&m.finish(2).unwrap());
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0, 2);
        assert_eq!(m.finish(3), None);
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary() {
        let mut out = Vec::new();
        let name = "é".repeat(200);
        put_str(&mut out, &name);
        assert_eq!(out[0], 254);
        assert!(std::str::from_utf8(&out[1..]).is_ok());
    }

    #[test]
    fn a_collector_receives_and_a_full_queue_counts_drops() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut e = Ipfix::start(IpfixConfig {
            collector: rx.local_addr().unwrap(),
            domain: 7,
            template_every: Duration::from_secs(60),
            flush_every: Duration::from_millis(50),
        })
        .unwrap();
        let mut buf = [0u8; 2048];
        // Templates first, on their own.
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(sets(&buf[..n]).1[0].0, 2);
        e.send(record(1, false));
        let n = rx.recv(&mut buf).unwrap();
        let (seq, s) = sets(&buf[..n]);
        assert_eq!((seq, s.len(), s[0].0), (0, 1, TEMPLATE_V4));
        e.stop(Duration::from_secs(2));
        assert_eq!(e.stats.records.load(Relaxed), 1);
        // Stopped: nothing is queued any more, and that is counted.
        e.send(record(2, false));
        assert_eq!(e.stats.dropped.load(Relaxed), 1);
    }
}
