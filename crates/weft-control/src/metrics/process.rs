//! The standard `process_*` metrics (client_golang's process collector,
//! which istiod exposes and the control plane dashboard reads), from
//! `/proc/self` (Linux only: elsewhere they are left out).

use std::path::Path;

use super::family::Text;

/// Why a process figure could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProcessError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: &'static str,
        source: std::io::Error,
    },
    #[error("{path} has no field {field}")]
    Field {
        path: &'static str,
        field: &'static str,
    },
}

/// One reading of the process' figures.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub start_time_seconds: f64,
}

fn read(path: &'static str) -> Result<String, ProcessError> {
    std::fs::read_to_string(path).map_err(|source| ProcessError::Read { path, source })
}

/// `/proc/self/stat`'s fields after the command (which may hold spaces
/// and parentheses): field 3 (state) is the first.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf reads a configuration value; no memory is passed.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0)
}

impl Process {
    pub fn read() -> Result<Process, ProcessError> {
        const STAT: &str = "/proc/self/stat";
        let stat = read(STAT)?;
        let fields = stat_fields(&stat);
        // proc(5) numbers fields from 1 (pid); `fields[0]` is field 3.
        let field = |n: usize, name: &'static str| -> Result<u64, ProcessError> {
            fields
                .get(n - 3)
                .and_then(|v| v.parse().ok())
                .ok_or(ProcessError::Field {
                    path: STAT,
                    field: name,
                })
        };
        let ticks = sysconf(libc::_SC_CLK_TCK).unwrap_or(100) as f64;
        let page = sysconf(libc::_SC_PAGESIZE).unwrap_or(4096);
        let utime = field(14, "utime")?;
        let stime = field(15, "stime")?;
        let start_ticks = field(22, "starttime")?;
        let virtual_bytes = field(23, "vsize")?;
        let rss_pages = field(24, "rss")?;
        let boot = read("/proc/stat")?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or(ProcessError::Field {
                path: "/proc/stat",
                field: "btime",
            })?;
        let open_fds = std::fs::read_dir(Path::new("/proc/self/fd"))
            .map_err(|source| ProcessError::Read {
                path: "/proc/self/fd",
                source,
            })?
            .count() as u64;
        Ok(Process {
            cpu_seconds: (utime + stime) as f64 / ticks,
            resident_bytes: rss_pages * page,
            virtual_bytes,
            // The directory's own handle, open while it is listed, is
            // counted: as client_golang's collector counts it.
            open_fds,
            max_fds: read("/proc/self/limits").ok().and_then(|l| max_fds(&l)),
            start_time_seconds: boot as f64 + start_ticks as f64 / ticks,
        })
    }

    pub fn render(&self, t: &mut Text) {
        let mut one = |name: &str, kind: &str, help: &str, v: String| {
            t.family(name, kind, help);
            t.sample(name, &[], v);
        };
        one(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            self.cpu_seconds.to_string(),
        );
        one(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            self.resident_bytes.to_string(),
        );
        one(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            self.virtual_bytes.to_string(),
        );
        one(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            self.open_fds.to_string(),
        );
        if let Some(max) = self.max_fds {
            one(
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                max.to_string(),
            );
        }
        one(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            self.start_time_seconds.to_string(),
        );
    }
}

/// The soft limit of "Max open files" in `/proc/self/limits`.
fn max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_skip_a_command_with_spaces_and_parentheses() {
        let stat = "42 (a b) c)) S 1 2 3";
        assert_eq!(stat_fields(stat), ["S", "1", "2", "3"]);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_fds(limits), Some(1024));
    }

    #[test]
    fn this_process_reads_plausibly() {
        let p = Process::read().unwrap();
        assert!(
            p.resident_bytes > 0 && p.virtual_bytes >= p.resident_bytes,
            "{p:?}"
        );
        assert!(p.open_fds >= 3, "{p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 86400.0 * 365.0);
    }
}
