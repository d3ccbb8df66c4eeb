//! EAL initialises once per process: a second `Eal::init` is an error, not a crash. This
//! file is its own test process, so it may start EAL itself.

use dataplane::dpdk::{DpdkError, Eal, Mempool};

#[test]
fn second_init_is_an_error_and_pools_work() {
    let prefix = format!("t_ealonce_{}", std::process::id());
    let args: Vec<String> = [
        "ealtest",
        "-l",
        "0",
        "--no-huge",
        "-m",
        "256",
        "--no-pci",
        "--no-shconf",
        "--log-level=4",
        "--file-prefix",
        &prefix,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init(&args).expect("EAL starts with --no-huge");
    assert_eq!(Eal::init(&args).err(), Some(DpdkError::AlreadyInitialized));
    assert!(eal.tsc_hz() > 0);

    let pool = Mempool::create("t_pool", 1023, 0, 0).unwrap();
    assert_eq!(pool.in_use(), 0);
    let mut m = pool.alloc().unwrap();
    m.append(60).unwrap().copy_from_slice(&[7u8; 60]);
    assert_eq!(m.pkt_len(), 60);
    assert_eq!(m.data(), &[7u8; 60][..]);
    assert_eq!(m.to_vec(), vec![7u8; 60]);
    assert_eq!(m.nb_segs(), 1);
    assert_eq!(pool.in_use(), 1);
    assert_eq!(pool.available(), pool.capacity() - 1);
    drop(m);
    assert_eq!(pool.in_use(), 0, "a dropped Mbuf goes back to its pool");

    let mut b = dataplane::dpdk::Burst::<4>::new();
    for _ in 0..4 {
        assert!(b.push(pool.alloc().unwrap()).is_ok());
    }
    assert!(
        b.push(pool.alloc().unwrap()).is_err(),
        "a full burst gives the packet back"
    );
    assert_eq!(pool.in_use(), 4, "the refused packet was freed when dropped");
    let first = b.drain().next();
    assert!(first.is_some());
    assert_eq!(pool.in_use(), 1, "a drain dropped early frees what it did not yield");
    drop(first);
    drop(b);
    assert_eq!(pool.in_use(), 0);
    // A leaked Drain leaks the packets it did not yield, and never frees one twice.
    let mut b = dataplane::dpdk::Burst::<4>::new();
    for _ in 0..3 {
        assert!(b.push(pool.alloc().unwrap()).is_ok());
    }
    let mut d = b.drain();
    let yielded = d.next().unwrap();
    std::mem::forget(d);
    assert!(b.is_empty(), "the burst gave up its packets when the drain began");
    drop(b);
    drop(yielded);
    assert_eq!(
        pool.in_use(),
        2,
        "the two packets the forgotten drain held are leaked, not freed twice"
    );
    drop(pool);
    eal.cleanup().unwrap();
    assert_eq!(
        Eal::init(&args).err(),
        Some(DpdkError::AlreadyInitialized),
        "not even after cleanup"
    );
}
