//! bench-all's UDP phase, against every server that serves UDP (the kernel module does
//! not): the closed loop over client sockets × datagram sizes (peak packets/s and loss),
//! then the open loop at fixed fractions of epoll's UDP peak (corrected and uncorrected
//! latency, loss), servers interleaved point by point like the TCP phases.

use std::time::Duration;

use super::all::{Measured, PhaseRunner};
use super::hist::{format_us, Percentiles};
use super::hlog;
use super::plot::{self, OpenLoop, OpenTag};
use super::results::{self, UdpRow};
use super::servers::Target;
use super::udp::{self, UdpResult, UdpSpec};
use crate::error::Result;

impl PhaseRunner<'_> {
    /// A UDP load against `t` (serving at `addr`) at (sockets, size): the closed loop
    /// (`rate` none: the profile's window of datagrams in flight per socket) or the open
    /// loop at `rate` (one), over the profile's UDP window, its payload from `seed`.
    fn udp_spec(
        &self,
        (t, addr): (&Target, std::net::SocketAddr),
        (sockets, size): (usize, usize),
        rate: Option<f64>,
        seed: u64,
    ) -> UdpSpec {
        let p = self.profile;
        UdpSpec {
            addr,
            sockets,
            size,
            window: if rate.is_some() { 1 } else { p.udp_window },
            rate,
            timeout: Duration::from_secs_f64(udp::TIMEOUT_SECS),
            run: self.run_spec(
                t,
                (p.udp_warmup, p.udp_secs),
                if rate.is_some() {
                    self.open_threads(sockets)
                } else {
                    self.client_threads(sockets)
                },
                seed,
            ),
        }
    }

    /// The UDP closed loop at (sockets, size) against `t`, which serves UDP at `addr`.
    pub(super) fn udp_closed(
        &self,
        t: &Target,
        addr: std::net::SocketAddr,
        sockets: usize,
        size: usize,
    ) -> Result<Measured<UdpRow>> {
        let p = self.profile;
        let spec = self.udp_spec(
            (t, addr),
            (sockets, size),
            None,
            (sockets * 31 + size) as u64,
        );
        let (began, r) = self.timed(|| udp::run(&spec))?;
        let row = to_row(&t.name, &spec, None, &r);
        let line = format!(
            "{:<6} UDP {:>3} x {:>4} B: {:>7.0} echoes/s, p99 {:>7}{}",
            t.name,
            sockets,
            size,
            row.echoes_per_sec,
            format_us(row.p99_us),
            loss(&row)
        );
        let logs = vec![hlog::Entry {
            tag: plot::udp_tag(sockets as u64, size as u64),
            start: began + p.udp_warmup,
            length: p.udp_secs,
            hist: r.latency,
        }];
        Ok(Measured { row, line, logs })
    }

    /// The UDP open loop at `pct`% of epoll's closed-loop peak at the point (`closed`:
    /// the UDP closed loop's rows).
    pub(super) fn udp_open(
        &self,
        t: &Target,
        addr: std::net::SocketAddr,
        (sockets, size, pct): (usize, usize, u32),
        closed: &[UdpRow],
    ) -> Result<Measured<UdpRow>> {
        let p = self.profile;
        let rate =
            super::all::fraction_of(reference_rate(closed, sockets as u64, size as u64), pct);
        let tag = OpenTag::new((sockets, size, pct), rate);
        let spec = self.udp_spec(
            (t, addr),
            (sockets, size),
            Some(rate),
            u64::from(pct) * 7919 + size as u64,
        );
        let (began, r) = self.timed(|| udp::run(&spec))?;
        let row = to_row(&t.name, &spec, Some(pct), &r);
        let line = format!(
            "{:<6} UDP open {rate:>6.0}/s ({pct}%): p99 {} (uncorr. {}){}",
            t.name,
            format_us(row.c_p99_us),
            format_us(row.p99_us),
            loss(&row)
        );
        let corrected = r.corrected.unwrap_or_else(super::hist::new_histogram);
        let logs = super::all::open_logs(
            (OpenLoop::Udp, &tag),
            (began + p.udp_warmup, p.udp_secs),
            corrected,
            r.latency,
        );
        Ok(Measured { row, line, logs })
    }
}

/// Epoll's closed-loop echoes/s at (sockets, size), else the best server's there, else
/// 10,000; never below 100.
fn reference_rate(closed: &[UdpRow], sockets: u64, size: u64) -> f64 {
    super::all::peak_reference(
        closed
            .iter()
            .filter(|r| r.sockets == sockets && r.size == size)
            .map(|r| (r.server.as_str(), r.echoes_per_sec)),
    )
}

/// A measured point as a CSV row (`fraction` set for the open loop), judged.
fn to_row(server: &str, spec: &UdpSpec, fraction: Option<u32>, r: &UdpResult) -> UdpRow {
    let secs = r.usage.window.as_secs_f64();
    let c = r.counts;
    let per = |d: Option<Duration>| match d {
        Some(d) if c.echoes > 0 => d.as_secs_f64() * 1e6 / c.echoes as f64,
        _ => f64::NAN,
    };
    let mut row = UdpRow {
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
        machine_us_per_echo: per(r.usage.machine_cpu),
        client_us_per_echo: per(Some(r.usage.client_cpu)),
        server_us_per_echo: per(r.usage.server_cpu),
        client_cpu_pct: r.usage.client_cpu.as_secs_f64() / secs * 100.0,
        lag_p99_us: r
            .send_lag
            .as_ref()
            .map_or(f64::NAN, |h| Percentiles::of(h).p99),
        errors: c.errors(),
        echoes: Some(c.echoes),
        server_wait_pct: r.usage.waits.pct(r.usage.window).0,
        client_wait_pct: r.usage.waits.pct(r.usage.window).1,
        problems: String::new(),
        ..UdpRow::default()
    };
    let corrected = r.corrected.as_ref().map(Percentiles::of);
    row.set_latency(&Percentiles::of(&r.latency), corrected.as_ref());
    results::judge(row)
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

#[cfg(test)]
mod tests {
    use super::super::results::tests::udp_row;
    use super::*;

    fn row(server: &str, sockets: u64, pps: f64) -> UdpRow {
        UdpRow {
            sockets,
            size: 64,
            echoes_per_sec: pps,
            ..udp_row(server, None)
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
    fn loss_is_said_only_when_there_is_some() {
        let mut r = row("epoll", 64, 1000.0);
        r.lost = 0;
        assert_eq!(loss(&r), "");
        r.lost = 3;
        r.loss_pct = 0.125;
        assert_eq!(loss(&r), ", loss 0.12%");
    }
}
