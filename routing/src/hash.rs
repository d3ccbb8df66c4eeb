//! Hashes that must give the same answer on every appliance with the same configuration
//! (several instances behind ECMP pick the same path for a flow): fixed, unseeded.

/// FNV-1a over bytes, finished with a 64-bit mixer so nearby names spread well.
pub fn name_hash(bytes: &[u8], salt: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// The splitmix64 finaliser: a cheap bijection with good avalanche.
#[inline(always)]
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
