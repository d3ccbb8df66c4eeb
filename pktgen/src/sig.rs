//! The signature every generated packet carries right after its L4 header, and the
//! receive side's sequence tracking.
//!
//! Layout (16 bytes): a 32-bit word of magic (16 bits), lane (4 bits: the TX core's
//! index) and stream (12 bits), big-endian; the sequence number within (stream, lane),
//! big-endian; the TSC at transmit, little-endian. Sender and receiver on one host share
//! the TSC, so latency is a subtraction.

pub const SIG_LEN: usize = 16;
pub const MAGIC: u32 = 0x5C1E;
pub const MAX_LANES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sig {
    pub stream: u16,
    pub lane: u8,
    pub seq: u32,
    pub tsc: u64,
}

/// Writes the signature and returns its first word (for the caller's checksum).
#[inline(always)]
pub fn write(buf: &mut [u8], stream: u16, lane: u8, seq: u32, tsc: u64) -> u32 {
    let head = MAGIC << 16 | (lane as u32 & 0xf) << 12 | (stream as u32 & 0xfff);
    buf[0..4].copy_from_slice(&head.to_be_bytes());
    buf[4..8].copy_from_slice(&seq.to_be_bytes());
    buf[8..16].copy_from_slice(&tsc.to_le_bytes());
    head
}

#[inline(always)]
pub fn read(buf: &[u8]) -> Option<Sig> {
    let b = buf.get(..SIG_LEN)?;
    let head = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if head >> 16 != MAGIC {
        return None;
    }
    Some(Sig {
        stream: (head & 0xfff) as u16,
        lane: ((head >> 12) & 0xf) as u8,
        seq: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        tsc: u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
    })
}

/// Finds the signature in a frame the generator built (and that may have crossed a
/// router: VLAN tags, TTL and DSCP can change, the payload cannot). None for anything
/// else.
#[inline(always)]
pub fn find(frame: &[u8]) -> Option<Sig> {
    let mut at = 12;
    let mut ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
    let mut tags = 0;
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        tags += 1;
        if tags > 2 {
            return None;
        }
        at += 4;
        ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
    }
    at += 2;
    let proto = match ethertype {
        0x0800 => {
            let ihl = (*frame.get(at)? & 0x0f) as usize * 4;
            if ihl < 20 {
                return None;
            }
            let p = *frame.get(at + 9)?;
            at += ihl;
            p
        }
        0x86dd => {
            let p = *frame.get(at + 6)?;
            at += 40;
            p
        }
        _ => return None,
    };
    let l4 = match proto {
        17 | 1 | 58 => 8,
        6 => (*frame.get(at + 12)? >> 4) as usize * 4,
        _ => return None,
    };
    read(frame.get(at + l4..)?)
}

/// Bits of history kept per (stream, lane) to tell a duplicate from a late packet.
pub const WINDOW: u64 = 4096;

/// Sequence tracking for one (stream, lane) at one receiver: in order, reordered (late,
/// first copy), duplicate (seen before), and too late to tell (older than the window).
#[derive(Debug, Clone)]
pub struct SeqTracker {
    /// One past the highest sequence seen (extended to 64 bits), 0 before the first.
    next: u64,
    seen: Box<[u64; (WINDOW / 64) as usize]>,
    pub unique: u64,
    pub reordered: u64,
    pub duplicates: u64,
    pub too_late: u64,
}

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker {
            next: 0,
            seen: Box::new([0; (WINDOW / 64) as usize]),
            unique: 0,
            reordered: 0,
            duplicates: 0,
            too_late: 0,
        }
    }
}

impl SeqTracker {
    #[inline(always)]
    fn bit(&mut self, s: u64) -> (&mut u64, u64) {
        let i = s % WINDOW;
        (&mut self.seen[(i / 64) as usize], 1u64 << (i % 64))
    }

    /// Records one arrival of 32-bit sequence `seq`.
    #[inline]
    pub fn record(&mut self, seq: u32) {
        // Extend to 64 bits: the value nearest to what is expected next.
        let diff = seq.wrapping_sub(self.next as u32) as i32 as i64;
        let ext = self.next as i64 + diff;
        if ext < 0 {
            self.too_late += 1;
            self.unique += 1;
            return;
        }
        let s = ext as u64;
        if s >= self.next {
            // New highest: forget what falls out of the window, then mark.
            let from = self.next;
            if s + 1 - from >= WINDOW {
                self.seen.fill(0);
            } else {
                for x in from..s {
                    let (w, b) = self.bit(x);
                    *w &= !b;
                }
            }
            let (w, b) = self.bit(s);
            *w |= b;
            self.next = s + 1;
            self.unique += 1;
        } else if self.next - s > WINDOW {
            self.too_late += 1;
            self.unique += 1;
        } else {
            let (w, b) = self.bit(s);
            if *w & b != 0 {
                self.duplicates += 1;
            } else {
                *w |= b;
                self.reordered += 1;
                self.unique += 1;
            }
        }
    }

    /// Sequences skipped past and not (yet) seen: the loss so far if nothing more comes.
    pub fn highest(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_find() {
        let mut b = [0u8; 16];
        write(&mut b, 7, 3, 0xdead_beef, 0x1122_3344_5566_7788);
        assert_eq!(
            read(&b),
            Some(Sig {
                stream: 7,
                lane: 3,
                seq: 0xdead_beef,
                tsc: 0x1122_3344_5566_7788
            })
        );
        b[0] = 0;
        assert_eq!(read(&b), None);
        assert_eq!(read(&b[..15]), None);
        // A frame: Ethernet + VLAN + IPv4 (with 4 bytes of options) + UDP + signature.
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x81, 0, 0, 5, 0x08, 0x00]);
        f.extend_from_slice(&[0x46, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[0; 12]);
        f.extend_from_slice(&[0; 8]);
        let mut s = [0u8; 16];
        write(&mut s, 1, 0, 9, 42);
        f.extend_from_slice(&s);
        assert_eq!(find(&f).unwrap().seq, 9);
        assert_eq!(find(&f[..f.len() - 1]), None);
        f[16] = 0x86; // unknown EtherType
        assert_eq!(find(&f), None);
    }

    #[test]
    fn in_order_loss_reorder_duplicate() {
        let mut t = SeqTracker::default();
        for s in [0, 1, 2, 4, 5, 3, 3, 7, 6, 7] {
            t.record(s);
        }
        assert_eq!(t.unique, 8);
        assert_eq!(t.reordered, 2);
        assert_eq!(t.duplicates, 2);
        assert_eq!(t.highest(), 8);
    }

    #[test]
    fn wraps_and_windows() {
        let mut t = SeqTracker::default();
        let start = u32::MAX - 5;
        // The first packet defines where counting starts; feed from a base near the wrap.
        t.next = start as u64;
        for i in 0..12u32 {
            t.record(start.wrapping_add(i));
        }
        assert_eq!(t.unique, 12);
        assert_eq!(t.reordered + t.duplicates + t.too_late, 0);
        // Far beyond the window: old sequence numbers are too late to judge.
        let mut t = SeqTracker::default();
        t.record(0);
        t.record(10_000);
        t.record(1);
        assert_eq!(t.too_late, 1);
        t.record(10_000 - 10);
        assert_eq!(t.reordered, 1);
        t.record(10_000 - 10);
        assert_eq!(t.duplicates, 1);
        // A big jump clears the history: a sequence reused after it is not a duplicate.
        let mut t = SeqTracker::default();
        t.record(5);
        t.record(5 + WINDOW as u32 * 3);
        t.record(5 + WINDOW as u32 * 3 - 1);
        assert_eq!(t.reordered, 1);
        assert_eq!(t.duplicates, 0);
    }
}
