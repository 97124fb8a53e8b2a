//! CPU accounting for benchmark runs: the whole machine's busy time (`/proc/stat`), one
//! process's (`/proc/PID/stat`) and the calling thread's. CPU time per echo is steadier
//! than echoes/s on a shared machine, and the client's own CPU shows whether a run
//! measured the server or the load generator.

use std::time::Duration;

/// Ticks per second of `/proc` times (USER_HZ).
fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no memory preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Busy CPU time of the whole machine so far (all CPUs, everything but idle and iowait).
pub fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy(&stat).map(|t| Duration::from_secs_f64(t as f64 / ticks_per_sec()))
}

/// Busy ticks from the `cpu ` line of `/proc/stat`.
pub fn parse_machine_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user]
    let busy: u64 = v.iter().take(8).sum::<u64>() - v.get(3)? - v.get(4).copied().unwrap_or(0);
    Some(busy.saturating_sub(v.get(7).copied().unwrap_or(0)))
}

/// User + system CPU time of process `pid` so far.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_process_cpu(&stat).map(|t| Duration::from_secs_f64(t as f64 / ticks_per_sec()))
}

/// utime + stime ticks from a `/proc/PID/stat` line (fields 14 and 15; the command name
/// in field 2 may contain spaces and parentheses, so count from the last ')').
pub fn parse_process_cpu(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14 → index 11.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Per thread of process `pid`, the time it has spent runnable but waiting for a CPU
/// (`/proc/PID/task/TID/schedstat`, second field, ns): what a CPU hog or a noisy
/// neighbour takes from it. Threads come and go, so a wait over a window is the sum of
/// the deltas of the threads present at both ends ([`waited`]).
pub fn task_waits(pid: u32) -> Option<Vec<(u32, u64)>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut v: Vec<(u32, u64)> = tasks
        .filter_map(|e| {
            let e = e.ok()?;
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("schedstat")).ok()?;
            Some((tid, parse_schedstat_wait(&stat)?))
        })
        .collect();
    v.sort_unstable();
    Some(v)
}

/// The run-queue wait, ns, of a `schedstat` line (`on-cpu-ns wait-ns timeslices`).
pub fn parse_schedstat_wait(line: &str) -> Option<u64> {
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The total wait between two [`task_waits`] readings, over the threads in both.
pub fn waited(before: &[(u32, u64)], after: &[(u32, u64)]) -> Duration {
    let ns: u64 = after
        .iter()
        .filter_map(|(tid, w)| {
            let i = before.binary_search_by_key(tid, |e| e.0).ok()?;
            Some(w.saturating_sub(before[i].1))
        })
        .sum();
    Duration::from_nanos(ns)
}

/// CPU time the calling thread has used.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the call.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_busy_excludes_idle_iowait_and_steal() {
        let stat = "cpu  100 5 50 1000 20 3 2 7 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        // user+nice+system+irq+softirq = 100+5+50+3+2
        assert_eq!(parse_machine_busy(stat), Some(160));
        assert_eq!(parse_machine_busy("intr 1 2 3"), None);
    }

    #[test]
    fn process_cpu_survives_odd_command_names() {
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(parse_process_cpu(stat), Some(325));
    }

    #[test]
    fn waits_are_summed_over_the_threads_present_at_both_ends() {
        assert_eq!(parse_schedstat_wait("1595110 4087732 2\n"), Some(4_087_732));
        assert_eq!(parse_schedstat_wait("12"), None);
        let before = [(1, 100), (2, 50), (3, 10)];
        let after = [(1, 400), (3, 1_010), (4, 9_999)];
        // Thread 2 exited, thread 4 is new: neither counts.
        assert_eq!(waited(&before, &after), Duration::from_nanos(300 + 1_000));
        assert!(task_waits(std::process::id()).is_some_and(|v| !v.is_empty()));
        assert_eq!(task_waits(u32::MAX), None);
    }

    #[test]
    fn live_readings_move_forward() {
        let a = thread_cpu();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu() > a);
        assert!(machine_busy().is_some());
        assert!(process_cpu(std::process::id()).is_some());
    }
}
