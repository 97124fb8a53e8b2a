//! What a results directory holds and the exporters that write it, one per format:
//! [`csv`] (every phase's typed rows), [`markdown`] (summary.md, built from those rows)
//! and, beside them, `plot` (the charts) and `hlog` (the histogram logs). bench-all
//! writes each phase's files as soon as the phase ends; `ringecho plot` reads them all
//! back through [`Results::read`].

pub mod csv;
pub mod markdown;

use std::path::Path;

use super::all_repeat::Measurement;
use super::plan::Phase;
use super::results::{self, BurstRow, LatencyRow, MemoryRow, ThroughputRow, UdpRow};
use crate::error::{Context, Error, Result};

/// The closed-loop matrix.
pub const THROUGHPUT_CSV: &str = "throughput.csv";
/// The open-loop rates.
pub const LATENCY_CSV: &str = "latency.csv";
/// Every connection of every burst round.
pub const BURST_CSV: &str = "burst.csv";
/// UDP, both loops.
pub const UDP_CSV: &str = "udp.csv";
/// The repeated phase's rounds.
pub const REPEATED_CSV: &str = "repeated.csv";
/// Idle-connection memory.
pub const MEMORY_CSV: &str = "memory.csv";
/// The summary, verdict first.
pub const SUMMARY_MD: &str = "summary.md";
/// The machine, the servers, the note.
pub const METADATA_TXT: &str = "metadata.txt";
/// The per-server histogram logs.
pub const HIST_DIR: &str = "histograms";

/// Every data file bench-all writes, so that a run into a directory that held an older
/// run's files never mixes the two.
const DATA_FILES: [&str; 8] = [
    THROUGHPUT_CSV,
    LATENCY_CSV,
    BURST_CSV,
    UDP_CSV,
    REPEATED_CSV,
    MEMORY_CSV,
    SUMMARY_MD,
    METADATA_TXT,
];

/// Remove what an earlier run left in `dir`: the data files, the charts (`*.png`) and the
/// histogram logs. Nothing else is touched.
pub fn clear(dir: &Path) -> Result<()> {
    let gone = |p: &Path| match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::from(e).context(format!("removing {}", p.display())))
        }
        _ => Ok(()),
    };
    for f in DATA_FILES {
        gone(&dir.join(f))?;
    }
    let listed = |d: &Path, ext: &str| -> Result<Vec<std::path::PathBuf>> {
        match std::fs::read_dir(d) {
            Ok(entries) => Ok(entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == ext))
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::from(e).context(format!("listing {}", d.display()))),
        }
    };
    for p in listed(dir, "png")?
        .into_iter()
        .chain(listed(&dir.join(HIST_DIR), "hlog")?)
    {
        gone(&p)?;
    }
    Ok(())
}

/// Every phase's rows of one results directory (a phase that did not run: none), each
/// judged again by the validity rule, and the metadata.
#[derive(Debug, Default, Clone)]
pub struct Results {
    pub throughput: Vec<ThroughputRow>,
    pub latency: Vec<LatencyRow>,
    pub burst: Vec<BurstRow>,
    pub udp: Vec<UdpRow>,
    pub repeated: Vec<Measurement>,
    pub memory: Vec<MemoryRow>,
    /// `metadata.txt`'s text ("" without it).
    pub metadata: String,
    /// Per server, burst connections that failed: known to the run that measured them
    /// (a failed connection has no row in `burst.csv`), not read back.
    pub burst_failed: Vec<(String, u64)>,
}

impl Results {
    /// Read `dir`; a missing file is a phase that did not run, a malformed one an error
    /// naming it and the line.
    pub fn read(dir: &Path) -> Result<Results> {
        let rows = |name: &str| dir.join(name);
        let metadata = match std::fs::read_to_string(rows(METADATA_TXT)) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::from(e).context(format!("reading {METADATA_TXT}"))),
        };
        Ok(Results {
            throughput: read_judged(&rows(THROUGHPUT_CSV))?,
            latency: read_judged(&rows(LATENCY_CSV))?,
            burst: csv::read(&rows(BURST_CSV))?.unwrap_or_default(),
            udp: read_judged(&rows(UDP_CSV))?,
            repeated: csv::read::<Measurement>(&rows(REPEATED_CSV))?
                .unwrap_or_default()
                .into_iter()
                .map(Measurement::judged)
                .collect(),
            memory: csv::read(&rows(MEMORY_CSV))?.unwrap_or_default(),
            metadata,
            burst_failed: Vec::new(),
        })
    }

    /// Nothing measured at all.
    pub fn is_empty(&self) -> bool {
        self.throughput.is_empty()
            && self.latency.is_empty()
            && self.burst.is_empty()
            && self.udp.is_empty()
            && self.repeated.is_empty()
            && self.memory.is_empty()
    }

    /// The `note:` line of the metadata (where the run was measured), or "".
    pub fn note(&self) -> String {
        self.metadata
            .lines()
            .find_map(|l| l.strip_prefix("note: ").map(str::to_string))
            .unwrap_or_default()
    }
}

impl Results {
    /// Write `phase`'s CSV file into `dir` (none if it measured nothing); its name.
    pub fn write_phase(&self, dir: &Path, phase: Phase) -> Result<&'static str> {
        fn put<T: serde::Serialize>(
            dir: &Path,
            name: &'static str,
            rows: &[T],
        ) -> Result<&'static str> {
            csv::write(&dir.join(name), rows)?;
            Ok(name)
        }
        match phase {
            Phase::Throughput => put(dir, THROUGHPUT_CSV, &self.throughput),
            Phase::Latency => put(dir, LATENCY_CSV, &self.latency),
            Phase::Burst => put(dir, BURST_CSV, &self.burst),
            Phase::Udp | Phase::UdpLatency => put(dir, UDP_CSV, &self.udp),
            Phase::Repeated => put(dir, REPEATED_CSV, &self.repeated),
            Phase::Memory => put(dir, MEMORY_CSV, &self.memory),
        }
    }
}

/// A file's rows with their `problems` column filled in by the rule.
fn read_judged<T>(path: &Path) -> Result<Vec<T>>
where
    T: serde::de::DeserializeOwned + super::validity::Judged + results::HasProblems,
{
    Ok(csv::read(path)?
        .unwrap_or_default()
        .into_iter()
        .map(results::judge)
        .collect())
}

/// Write `text` to `dir/name`.
pub fn write_text(dir: &Path, name: &str, text: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}
