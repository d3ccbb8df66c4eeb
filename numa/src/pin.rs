//! Pinning the appliance's own threads: every thread of this process that is not a worker
//! (EAL's interrupt, multi-process and telemetry threads, and any side thread) goes to the
//! control core, so nothing but a worker ever runs on a worker core.

use std::collections::BTreeSet;

/// Sets the CPU affinity of every thread of this process that is not pinned to exactly
/// one of `workers` to `control`. Returns how many threads it moved. Threads that end
/// while it runs are skipped.
pub fn pin_side_threads(control: u32, workers: &[u32]) -> std::io::Result<usize> {
    let mut set = nix::sched::CpuSet::new();
    set.set(control as usize).map_err(std::io::Error::other)?;
    let mut moved = 0;
    for e in std::fs::read_dir("/proc/self/task")?.flatten() {
        let Ok(tid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let allowed = allowed_cpus(tid).unwrap_or_default();
        let is_worker = allowed.len() == 1 && allowed.iter().all(|c| workers.contains(c));
        if is_worker || allowed == BTreeSet::from([control]) {
            continue;
        }
        match nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(tid), &set) {
            Ok(()) => moved += 1,
            // The thread ended meanwhile.
            Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(std::io::Error::other(format!("thread {tid}: {e}"))),
        }
    }
    Ok(moved)
}

/// The CPUs thread `tid` of this process may run on (`Cpus_allowed_list`).
pub fn allowed_cpus(tid: i32) -> Option<BTreeSet<u32>> {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?;
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    crate::parse_cpu_list(list).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn side_threads_go_to_the_control_core() {
        let online = crate::System::default().online_cpus().unwrap();
        let control = *online.iter().next().unwrap();
        // A thread free to run anywhere, and one that plays a worker (pinned to one
        // core that is not the control's, when the machine has one).
        let worker_cpu = online.iter().copied().find(|&c| c != control);
        let (tid_tx, tid_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let done_rx = std::sync::Arc::new(std::sync::Mutex::new(done_rx));
        let mut handles = Vec::new();
        for (k, pin) in [None, worker_cpu].into_iter().enumerate() {
            let (tid_tx, done_rx) = (tid_tx.clone(), done_rx.clone());
            handles.push(std::thread::spawn(move || {
                if let Some(c) = pin {
                    let mut s = nix::sched::CpuSet::new();
                    s.set(c as usize).unwrap();
                    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &s).unwrap();
                }
                tid_tx.send((k, nix::unistd::gettid().as_raw())).unwrap();
                let _ = done_rx.lock().unwrap().recv();
            }));
        }
        // The two threads report in either order: each says which it is.
        let mut tids = [tid_rx.recv().unwrap(), tid_rx.recv().unwrap()];
        tids.sort();
        let [(_, free), (_, pinned)] = tids;
        let mine = allowed_cpus(nix::unistd::gettid().as_raw()).unwrap();
        assert_eq!(allowed_cpus(free).unwrap(), mine, "starts with its parent's CPUs");
        if mine == BTreeSet::from([control]) {
            eprintln!("only CPU {control} is allowed here: nothing to move, nothing tested");
            return;
        }
        let workers: Vec<u32> = worker_cpu.into_iter().collect();
        let moved = pin_side_threads(control, &workers).unwrap();
        assert!(moved >= 1, "the free thread moved");
        assert_eq!(allowed_cpus(free).unwrap(), BTreeSet::from([control]));
        if let Some(w) = worker_cpu {
            assert_eq!(allowed_cpus(pinned).unwrap(), BTreeSet::from([w]), "a worker stays");
        }
        drop(done_tx);
        for h in handles {
            h.join().unwrap();
        }
    }
}
