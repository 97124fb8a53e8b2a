//! bench-all's UDP phase, against every server that serves UDP (the kernel module does
//! not): the closed loop over client sockets × datagram sizes (peak packets/s and loss),
//! then the open loop at fixed fractions of epoll's UDP peak (corrected and uncorrected
//! latency, loss), servers interleaved point by point like the TCP phases.

use std::time::Duration;

use super::all::{self, Ctx, Logs, Progress};
use super::hist::Percentiles;
use super::hlog;
use super::plot::{self, UdpLatencyTag};
use super::results::UdpRow;
use super::servers::Target;
use super::udp::{self, UdpResult, UdpSpec};
use crate::error::Result;

impl Ctx<'_> {
    /// The UDP closed loop at every (sockets, size) point.
    pub(super) fn udp(
        &self,
        targets: &[Target],
        points: &[(usize, usize)],
        progress: &mut Progress,
        logs: &mut Logs,
    ) -> Result<Vec<UdpRow>> {
        let p = self.profile;
        let mut rows = Vec::new();
        for &(sockets, size) in points {
            for t in targets {
                let Some(addr) = t.udp else { continue };
                progress.starting(format!("{} UDP {sockets} sockets x {size} B", t.name));
                let spec = UdpSpec {
                    addr,
                    sockets,
                    size,
                    window: p.udp_window,
                    rate: None,
                    timeout: Duration::from_secs_f64(udp::TIMEOUT_SECS),
                    warmup: p.udp_warmup,
                    duration: p.udp_secs,
                    threads: self.load_threads(sockets),
                    cpus: self.args.client_cpus.clone(),
                    seed: (sockets * 31 + size) as u64,
                    server_pid: t.pid(),
                };
                let began = self.run_start.elapsed();
                let r = udp::run(&spec)?;
                let row = to_row(&t.name, &spec, None, &r);
                progress.finished_noting(
                    p.udp_step_secs().0,
                    &format!(
                        "{:<6} UDP {:>3} x {:>4} B: {:>7.0} echoes/s, p99 {:>7}{}",
                        t.name,
                        sockets,
                        size,
                        row.echoes_per_sec,
                        super::hist::format_us(row.latency.p99),
                        loss(&row)
                    ),
                    &problems(&row),
                );
                logs.entry(t.name.clone()).or_default().push(hlog::Entry {
                    tag: plot::udp_tag(sockets as u64, size as u64),
                    start: began + p.udp_warmup,
                    length: p.udp_secs,
                    hist: r.latency,
                });
                rows.push(row);
            }
        }
        Ok(rows)
    }

    /// The UDP open loop at fractions of epoll's closed-loop peak at the latency point.
    pub(super) fn udp_latency(
        &self,
        targets: &[Target],
        closed: &[UdpRow],
        progress: &mut Progress,
        logs: &mut Logs,
    ) -> Result<Vec<UdpRow>> {
        let p = self.profile;
        let (sockets, size) = (p.udp_latency_sockets, p.udp_latency_size);
        let reference = reference_rate(closed, sockets as u64, size as u64);
        let mut out = Vec::new();
        for &pct in &p.udp_latency_percents {
            let rate = ((reference * f64::from(pct) / 100.0) / 100.0)
                .round()
                .max(1.0)
                * 100.0;
            let tag = UdpLatencyTag {
                fraction: pct,
                rate: rate as u64,
                sockets: sockets as u64,
                size: size as u64,
            };
            for t in targets {
                let Some(addr) = t.udp else { continue };
                progress.starting(format!("{} UDP open loop at {rate:.0}/s", t.name));
                let spec = UdpSpec {
                    addr,
                    sockets,
                    size,
                    window: 1,
                    rate: Some(rate),
                    timeout: Duration::from_secs_f64(udp::TIMEOUT_SECS),
                    warmup: p.udp_warmup,
                    duration: p.udp_secs,
                    // One thread per client CPU: two sharing a CPU delay each other's
                    // scheduled sends, which the corrected latency charges to the server.
                    threads: self.args.client_cpus.len().clamp(1, sockets),
                    cpus: self.args.client_cpus.clone(),
                    seed: u64::from(pct) * 7919 + size as u64,
                    server_pid: t.pid(),
                };
                let began = self.run_start.elapsed();
                let r = udp::run(&spec)?;
                let row = to_row(&t.name, &spec, Some(pct), &r);
                let corrected_p99 = row.corrected.map_or(f64::NAN, |c| c.p99);
                progress.finished_noting(
                    p.udp_step_secs().1,
                    &format!(
                        "{:<6} UDP open {rate:>6.0}/s ({pct}%): p99 {} (uncorr. {}){}",
                        t.name,
                        super::hist::format_us(corrected_p99),
                        super::hist::format_us(row.latency.p99),
                        loss(&row)
                    ),
                    &problems(&row),
                );
                let log = logs.entry(t.name.clone()).or_default();
                let corrected = r.corrected.unwrap_or_else(super::hist::new_histogram);
                for (kind, h) in [("corrected", corrected), ("uncorrected", r.latency)] {
                    log.push(hlog::Entry {
                        tag: tag.tag(kind),
                        start: began + p.udp_warmup,
                        length: p.udp_secs,
                        hist: h,
                    });
                }
                out.push(row);
            }
        }
        Ok(out)
    }

    /// Load threads for a closed-loop point: `--client-threads`, else one per client CPU,
    /// never more than sockets.
    fn load_threads(&self, sockets: usize) -> usize {
        let t = self
            .args
            .client_threads
            .unwrap_or(self.args.client_cpus.len());
        t.clamp(1, sockets.max(1))
    }
}

/// Epoll's closed-loop echoes/s at (sockets, size), else the best server's there, else
/// 10,000; never below 100.
fn reference_rate(closed: &[UdpRow], sockets: u64, size: u64) -> f64 {
    let at_point = |r: &&UdpRow| r.sockets == sockets && r.size == size;
    closed
        .iter()
        .filter(at_point)
        .find(|r| r.server == "epoll")
        .or_else(|| {
            closed
                .iter()
                .filter(at_point)
                .max_by(|a, b| a.echoes_per_sec.total_cmp(&b.echoes_per_sec))
        })
        .map_or(10_000.0, |r| r.echoes_per_sec)
        .max(100.0)
}

/// A measured point as a CSV row (`fraction` set for the open loop).
fn to_row(server: &str, spec: &UdpSpec, fraction: Option<u32>, r: &UdpResult) -> UdpRow {
    let secs = r.window.as_secs_f64();
    let c = r.counts;
    let per = |d: Option<Duration>| match d {
        Some(d) if c.echoes > 0 => d.as_secs_f64() * 1e6 / c.echoes as f64,
        _ => f64::NAN,
    };
    UdpRow {
        server: server.into(),
        workload: if spec.rate.is_some() {
            "latency"
        } else {
            "throughput"
        }
        .into(),
        sockets: spec.sockets as u64,
        size: spec.size as u64,
        window: if spec.rate.is_some() {
            0
        } else {
            spec.window as u64
        },
        rate: spec.rate.unwrap_or(0.0),
        fraction: fraction.unwrap_or(0),
        echoes_per_sec: r.echoes_per_sec(),
        mb_per_sec: r.bytes as f64 / secs / 1e6,
        sent: c.sent,
        lost: c.lost,
        loss_pct: c.loss_pct(),
        late: c.late,
        latency: Percentiles::of(&r.latency),
        corrected: r.corrected.as_ref().map(Percentiles::of),
        machine_us_per_echo: per(r.machine_cpu),
        client_us_per_echo: per(Some(r.client_cpu)),
        server_us_per_echo: per(r.server_cpu),
        client_cpu_pct: r.client_cpu.as_secs_f64() / secs * 100.0,
        lag_p99_us: r
            .send_lag
            .as_ref()
            .map_or(f64::NAN, |h| Percentiles::of(h).p99),
        errors: c.errors(),
    }
}

/// `64 sockets x 64 B` or `open loop at 50000/s (64 sockets x 64 B)`.
pub(super) fn point(r: &UdpRow) -> String {
    if r.corrected.is_some() {
        format!(
            "open loop at {:.0}/s ({} sockets x {} B)",
            r.rate, r.sockets, r.size
        )
    } else {
        format!("{} sockets x {} B", r.sockets, r.size)
    }
}

/// ", loss 0.12%" when any datagram was lost, or "": most points lose none, and the
/// console line has no room to say so.
fn loss(r: &UdpRow) -> String {
    if r.lost > 0 {
        format!(", loss {:.2}%", r.loss_pct)
    } else {
        String::new()
    }
}

/// ", 3 ERRORS (wrong bytes or duplicates), loss 2.5%, ..." or "" for a clean point.
pub(super) fn problems(r: &UdpRow) -> String {
    let mut s = String::new();
    if r.errors > 0 {
        s += &format!(", {} ERRORS (wrong bytes or duplicates)", r.errors);
    }
    if r.echoes_per_sec == 0.0 {
        s += ", nothing came back";
    } else if r.loss_pct > udp::MAX_LOSS_PCT {
        s += &format!(", loss {:.2}% of {} datagrams", r.loss_pct, r.sent);
    }
    if r.lag_p99_us > all::LAG_SATURATED_US {
        s += &format!(
            ", load generator behind (send lag p99 {}): measures the harness",
            super::hist::format_us(r.lag_p99_us)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(server: &str, sockets: u64, pps: f64) -> UdpRow {
        let p = Percentiles {
            count: 0,
            p50: 1.0,
            p90: 1.0,
            p99: 1.0,
            p999: 1.0,
            p9999: 1.0,
            max: 1.0,
        };
        UdpRow {
            server: server.into(),
            workload: "throughput".into(),
            sockets,
            size: 64,
            window: 4,
            rate: 0.0,
            fraction: 0,
            echoes_per_sec: pps,
            mb_per_sec: 0.0,
            sent: 1000,
            lost: 0,
            loss_pct: 0.0,
            late: 0,
            latency: p,
            corrected: None,
            machine_us_per_echo: 1.0,
            client_us_per_echo: 1.0,
            server_us_per_echo: 1.0,
            client_cpu_pct: 50.0,
            lag_p99_us: f64::NAN,
            errors: 0,
        }
    }

    #[test]
    fn the_reference_is_epolls_peak_at_the_latency_point() {
        let rows = [
            row("uring", 64, 300_000.0),
            row("epoll", 64, 200_000.0),
            row("epoll", 1, 50_000.0),
        ];
        assert_eq!(reference_rate(&rows, 64, 64), 200_000.0);
        assert_eq!(
            reference_rate(&rows[..1], 64, 64),
            300_000.0,
            "no epoll row"
        );
        assert_eq!(reference_rate(&rows, 8, 64), 10_000.0, "no row at all");
    }

    #[test]
    fn loss_above_the_threshold_and_silence_are_problems() {
        let mut r = row("epoll", 64, 1000.0);
        assert_eq!(problems(&r), "");
        r.lag_p99_us = 5.0;
        assert_eq!(problems(&r), "", "a few µs late is on time");
        r.lag_p99_us = all::LAG_SATURATED_US * 3.0;
        assert!(problems(&r).contains("load generator behind"));
        r.lag_p99_us = f64::NAN;
        r.loss_pct = udp::MAX_LOSS_PCT * 2.0;
        assert!(problems(&r).contains("loss 2.00%"), "{}", problems(&r));
        r.echoes_per_sec = 0.0;
        assert!(problems(&r).contains("nothing came back"));
        r.errors = 3;
        assert!(problems(&r).contains("3 ERRORS"));
    }
}
