//! `sluice-pcapgen`: writes pcap files of UDP/TCP traffic for the demo and the benchmarks
//! (net_pcap replays them with `infinite_rx=1`): fixed sizes or IMIX, IPv4 or IPv6, a
//! number of distinct flows, destinations inside a prefix, and optionally a share of
//! packets with no route.

use clap::{Parser, ValueEnum};
use dataplane::builder::{FrameSpec, IpAddrPair, PROTO_TCP, PROTO_UDP};
use dataplane::pcap::PcapWriter;
use routing::{Ipv4Prefix, Ipv6Prefix};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

#[derive(Parser)]
#[command(
    name = "sluice-pcapgen",
    version,
    about = "Write pcap files of test traffic for Sluice's demo and benchmarks"
)]
struct Cli {
    /// Output file.
    #[arg(long, short)]
    out: PathBuf,
    /// Distinct flows (5-tuples); one packet per flow, repeated to reach --packets.
    #[arg(long, default_value_t = 4096)]
    flows: u32,
    /// Packets in the file (at least --flows).
    #[arg(long)]
    packets: Option<u32>,
    /// Frame size without FCS (60 = a 64-byte frame on the wire), or "imix" (7:4:1 of
    /// 64, 570 and 1518-byte frames).
    #[arg(long, default_value = "60")]
    size: String,
    #[arg(long, value_enum, default_value = "v4")]
    family: Family,
    /// Destinations are spread over this prefix (IPv4 or IPv6, matching --family).
    #[arg(long)]
    dst: Option<String>,
    /// Percentage of packets sent to an address outside every route (203.0.113.0/24 or
    /// 2001:db8:ffff::/48), to show drops.
    #[arg(long, default_value_t = 0)]
    unroutable_pct: u32,
    /// Percentage of TCP packets (the rest are UDP).
    #[arg(long, default_value_t = 30)]
    tcp_pct: u32,
}

/// IMIX 7:4:1 of 64/570/1518-byte frames (without the 4-byte FCS).
const IMIX: [usize; 12] = [60, 566, 60, 60, 566, 60, 1514, 60, 566, 60, 60, 566];

fn main() {
    let cli = Cli::parse();
    let sizes: Vec<usize> = if cli.size == "imix" {
        IMIX.to_vec()
    } else {
        match cli.size.parse::<usize>() {
            Ok(n) if (60..=9014).contains(&n) => vec![n],
            _ => fail(&format!("--size {:?}: expected 60 to 9014 or \"imix\"", cli.size)),
        }
    };
    if cli.flows == 0 || cli.flows > 16_000_000 {
        fail("--flows must be from 1 to 16000000");
    }
    if cli.unroutable_pct > 100 || cli.tcp_pct > 100 {
        fail("percentages must be from 0 to 100");
    }
    let packets = cli.packets.unwrap_or(cli.flows).max(cli.flows);
    let mut w = PcapWriter::create(&cli.out).unwrap_or_else(|e| fail(&format!("{}: {e}", cli.out.display())));
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..packets {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let flow = i % cli.flows;
        let unroutable = (rng % 100) < cli.unroutable_pct as u64;
        let src_port = 1024 + (flow % 60_000) as u16;
        let host = flow / 60_000;
        let addrs = match cli.family {
            Family::V4 => {
                let dst: Ipv4Prefix = cli
                    .dst
                    .as_deref()
                    .unwrap_or("198.18.0.0/24")
                    .parse()
                    .unwrap_or_else(|e| fail(&format!("--dst: {e}")));
                let span = if dst.len >= 31 { 1 } else { (1u32 << (32 - dst.len)) - 2 };
                let d = if unroutable {
                    Ipv4Addr::new(203, 0, 113, (flow % 250 + 1) as u8)
                } else {
                    Ipv4Addr::from(u32::from(dst.network().addr) + 1 + flow % span)
                };
                IpAddrPair::V4(Ipv4Addr::from(0x0a00_0000 + 1 + host), d)
            }
            Family::V6 => {
                let dst: Ipv6Prefix = cli
                    .dst
                    .as_deref()
                    .unwrap_or("2001:db8:100::/48")
                    .parse()
                    .unwrap_or_else(|e| fail(&format!("--dst: {e}")));
                let d = if unroutable {
                    Ipv6Addr::from((0x2001_0db8_ffffu128 << 80) + flow as u128)
                } else {
                    Ipv6Addr::from(u128::from(dst.network().addr) + 1 + flow as u128)
                };
                IpAddrPair::V6(Ipv6Addr::from((0x2001_0db8_0001u128 << 80) + 1 + host as u128), d)
            }
        };
        let spec = FrameSpec {
            src: addrs,
            proto: if (flow * 7919) % 100 < cli.tcp_pct {
                PROTO_TCP
            } else {
                PROTO_UDP
            },
            src_port,
            dst_port: [53, 80, 443, 5001][(flow % 4) as usize],
            dscp: [0, 10, 18, 46][(flow % 4) as usize],
            ..FrameSpec::udp4(
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                sizes[i as usize % sizes.len()],
            )
        };
        w.write(i as u64, &spec.build())
            .unwrap_or_else(|e| fail(&format!("{}: {e}", cli.out.display())));
    }
    w.finish()
        .unwrap_or_else(|e| fail(&format!("{}: {e}", cli.out.display())));
    println!("{}: {packets} packets, {} flows", cli.out.display(), cli.flows);
}

fn fail(msg: &str) -> ! {
    eprintln!("sluice-pcapgen: {msg}");
    std::process::exit(2);
}
