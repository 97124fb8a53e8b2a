//! What the machine is and does to the numbers: warnings before a run (conditions that
//! distort results) and the metadata written next to the results.

use super::all::Profile;
use super::servers::Target;

/// Conditions that distort results, said before the run.
pub fn environment_warnings(p: &Profile, client_cpus: &[usize]) -> Vec<String> {
    let mut w = Vec::new();
    let max_conns = p.conns.iter().copied().max().unwrap_or(0) as u64;
    let cpus = crate::net::online_cpus();
    if cpus < 2 || client_cpus.contains(&0) {
        w.push("server and load generator share a CPU: the run measures both".into());
    }
    if let Some(s) = read_num("/proc/sys/net/core/somaxconn") {
        if s < max_conns.min(4096) {
            w.push(format!(
                "net.core.somaxconn is {s}, below the {max_conns} connections made at once"
            ));
        }
    }
    let nofile = crate::net::raise_nofile_limit();
    if nofile < max_conns + 256 {
        w.push(format!(
            "the open-file limit {nofile} is below {max_conns} connections"
        ));
    }
    if let Some(r) = read_num("/proc/sys/net/core/rmem_max") {
        // The servers ask for 4 MiB UDP receive buffers; the kernel caps them here.
        if r < UDP_RCVBUF_WANTED {
            w.push(format!(
                "net.core.rmem_max is {r}, below the servers' 4 MiB UDP receive buffers: \
                 the UDP closed loop may measure drops at a full queue"
            ));
        }
    }
    if let Ok(g) = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    {
        if g.trim() != "performance" {
            w.push(format!("CPU frequency scaling governor is '{}'", g.trim()));
        }
    }
    w
}

/// The UDP receive buffer the servers ask for (`src/sys/net.rs`).
const UDP_RCVBUF_WANTED: u64 = 4 << 20;

fn read_num(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Kernel, CPU, servers (their start-up lines name the io_uring features in use), the
/// sysctls that matter, where things ran, and the run's note.
pub fn metadata(targets: &[Target], placement: &str, note: &str) -> String {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let mut m = format!(
        "kernel: {}\ncpu: {} x {}\n",
        ringecho_server::uring::probe::kernel_release(),
        crate::net::online_cpus(),
        cpu_model
    );
    for (k, p) in [
        ("net.core.somaxconn", "/proc/sys/net/core/somaxconn"),
        (
            "net.ipv4.tcp_max_syn_backlog",
            "/proc/sys/net/ipv4/tcp_max_syn_backlog",
        ),
        ("net.core.rmem_max", "/proc/sys/net/core/rmem_max"),
        ("net.core.wmem_max", "/proc/sys/net/core/wmem_max"),
    ] {
        m += &format!(
            "{k}: {}\n",
            read_num(p).map_or("?".into(), |v| v.to_string())
        );
    }
    m += &format!("open-file limit: {}\n", crate::net::nofile_limit());
    m += &format!("placement: {placement}\n");
    if !note.is_empty() {
        m += &format!("note: {note}\n");
    }
    for t in targets {
        m += &format!("server {}: {}\n", t.name, t.banner);
    }
    m
}
