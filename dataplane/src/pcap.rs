//! Classic pcap files (the format `net_pcap` reads and writes): a small reader and writer
//! for golden tests, benchmark inputs and the demo. Microsecond or nanosecond timestamps,
//! either byte order, Ethernet link type.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u32 = 1;
/// Largest packet record accepted when reading (DPDK's pcap snapshot length).
pub const MAX_RECORD: u32 = 65535;

/// Writes Ethernet frames into a pcap file.
pub struct PcapWriter<W: Write> {
    out: W,
}

impl PcapWriter<BufWriter<File>> {
    pub fn create(path: &Path) -> io::Result<Self> {
        PcapWriter::new(BufWriter::new(File::create(path)?))
    }
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&MAGIC_US.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        out.write_all(&MAX_RECORD.to_le_bytes())?;
        out.write_all(&LINKTYPE_ETHERNET.to_le_bytes())?;
        Ok(PcapWriter { out })
    }

    pub fn write(&mut self, ts_us: u64, frame: &[u8]) -> io::Result<()> {
        self.out.write_all(&((ts_us / 1_000_000) as u32).to_le_bytes())?;
        self.out.write_all(&((ts_us % 1_000_000) as u32).to_le_bytes())?;
        self.out.write_all(&(frame.len() as u32).to_le_bytes())?;
        self.out.write_all(&(frame.len() as u32).to_le_bytes())?;
        self.out.write_all(frame)
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads every frame of a pcap file (timestamp in ns, bytes).
pub fn read_all(path: &Path) -> io::Result<Vec<(u64, Vec<u8>)>> {
    let mut r = BufReader::new(File::open(path)?);
    read_from(&mut r)
}

pub fn read_from(r: &mut impl Read) -> io::Result<Vec<(u64, Vec<u8>)>> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut hdr = [0u8; 24];
    r.read_exact(&mut hdr)?;
    let magic_le = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let magic_be = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let (le, ns) = match (magic_le, magic_be) {
        (MAGIC_US, _) => (true, false),
        (MAGIC_NS, _) => (true, true),
        (_, MAGIC_US) => (false, false),
        (_, MAGIC_NS) => (false, true),
        _ => return Err(bad("not a pcap file (bad magic)")),
    };
    let u32_at = |b: &[u8], i: usize| {
        let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    if u32_at(&hdr, 20) & 0xffff != LINKTYPE_ETHERNET {
        return Err(bad("pcap link type is not Ethernet"));
    }
    let mut out = Vec::new();
    loop {
        let mut rec = [0u8; 16];
        match r.read_exact(&mut rec) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let caplen = u32_at(&rec, 8);
        if caplen > MAX_RECORD {
            return Err(bad("pcap record larger than 65535 bytes"));
        }
        let frac = u32_at(&rec, 4) as u64;
        let ts = u32_at(&rec, 0) as u64 * 1_000_000_000 + if ns { frac } else { frac * 1000 };
        let mut data = vec![0u8; caplen as usize];
        r.read_exact(&mut data)?;
        out.push((ts, data));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(1_500_000, &[1, 2, 3]).unwrap();
        w.write(2_000_001, &[4; 70]).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len(), 24 + 16 + 3 + 16 + 70);
        let got = read_from(&mut bytes.as_slice()).unwrap();
        assert_eq!(got, vec![(1_500_000_000, vec![1, 2, 3]), (2_000_001_000, vec![4; 70])]);
        assert!(read_from(&mut &bytes[..10]).is_err());
        let mut bad = bytes.clone();
        bad[0] = 0;
        assert!(read_from(&mut bad.as_slice()).is_err());
    }
}
