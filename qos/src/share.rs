//! Splitting a class's rate across workers. Each worker meters its own flows with its
//! share of the rate; the control thread rebalances the shares by the demand each worker
//! measured in the last period, so the aggregate stays the configured rate however the
//! flows happen to spread over workers.

/// The whole, in parts per million.
pub const WHOLE_PPM: u32 = 1_000_000;

/// Shares in parts per million, proportional to each worker's demand (bytes offered in
/// the last period), with every worker keeping at least `floor_ppm` so that a worker
/// whose first packets arrive now is not starved until the next rebalance. With no
/// demand at all the shares are equal. The shares always sum to exactly `WHOLE_PPM`.
pub fn rebalance(demand: &[u64], floor_ppm: u32) -> Vec<u32> {
    let n = demand.len();
    if n == 0 {
        return Vec::new();
    }
    let floor = floor_ppm.min(WHOLE_PPM / n as u32);
    let total: u128 = demand.iter().map(|&d| d as u128).sum();
    let mut shares: Vec<u32> = if total == 0 {
        vec![WHOLE_PPM / n as u32; n]
    } else {
        let spare = (WHOLE_PPM - floor * n as u32) as u128;
        demand
            .iter()
            .map(|&d| floor + (spare * d as u128 / total) as u32)
            .collect()
    };
    // Rounding leaves a few ppm over; give them to the busiest worker.
    let sum: u32 = shares.iter().sum();
    let busiest = (0..n).max_by_key(|&i| demand[i]).unwrap_or(0);
    shares[busiest] += WHOLE_PPM - sum;
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_to_whole() {
        for demand in [
            vec![0, 0, 0],
            vec![1, 2, 3],
            vec![u64::MAX, u64::MAX],
            vec![7],
            vec![0, 5, 0, 0],
        ] {
            let s = rebalance(&demand, 10_000);
            assert_eq!(s.iter().sum::<u32>(), WHOLE_PPM, "{demand:?}");
            assert!(s.iter().all(|&x| x >= 10_000.min(WHOLE_PPM / demand.len() as u32)));
        }
    }

    #[test]
    fn follows_demand() {
        let s = rebalance(&[900, 100], 0);
        assert_eq!(s, vec![900_000, 100_000]);
        let s = rebalance(&[0, 100], 50_000);
        assert_eq!(s, vec![50_000, 950_000]);
        let s = rebalance(&[0, 0], 50_000);
        assert_eq!(s, vec![500_000, 500_000]);
    }
}
