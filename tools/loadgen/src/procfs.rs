//! CPU time and memory of other processes and their threads, from `/proc`
//! (Linux), and this process's own CPU time.

use anyhow::{Context, Result, anyhow};
use std::collections::HashMap;
use std::time::Duration;

/// CPU time (user + system) and name of one process or thread, from its
/// `/proc/.../stat` line.
#[derive(Clone, Debug, PartialEq)]
pub struct Stat {
    /// `comm`: the thread or process name (at most 15 bytes, set by the program).
    pub comm: String,
    /// utime + stime, in clock ticks.
    pub ticks: u64,
}

/// Parses a `/proc/PID/stat` (or `/proc/PID/task/TID/stat`) line. The name
/// sits in parentheses and may itself hold spaces and parentheses, so the
/// fields are counted from the last `)`.
pub fn parse_stat(line: &str) -> Result<Stat> {
    let open = line
        .find('(')
        .ok_or_else(|| anyhow!("no `(` in stat line"))?;
    let close = line
        .rfind(')')
        .ok_or_else(|| anyhow!("no `)` in stat line"))?;
    let comm = line
        .get(open + 1..close)
        .ok_or_else(|| anyhow!("bad name in stat line"))?
        .to_owned();
    // After the name: state (field 3), …, utime (14), stime (15).
    let rest: Vec<&str> = line[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        rest.get(n - 3)
            .ok_or_else(|| anyhow!("stat line has no field {n}"))?
            .parse()
            .with_context(|| format!("stat field {n}"))
    };
    Ok(Stat {
        comm,
        ticks: field(14)? + field(15)?,
    })
}

/// A value in kB from `/proc/PID/status` (e.g. `VmRSS`, `VmHWM`).
pub fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Clock ticks per second (`_SC_CLK_TCK`, 100 on Linux).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Clock ticks as a duration.
pub fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_micros(ticks * 1_000_000 / ticks_per_second())
}

/// One process's CPU time so far, whole and per thread.
#[derive(Clone, Debug, Default)]
pub struct CpuSample {
    /// The whole process (every thread, also those that ended), in ticks.
    pub ticks: u64,
    /// Per live thread: its id → (name, ticks).
    pub threads: HashMap<u32, (String, u64)>,
}

impl CpuSample {
    /// Reads `/proc/PID/stat` and every `/proc/PID/task/*/stat`.
    pub fn read(pid: u32) -> Result<CpuSample> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("read /proc/{pid}/stat"))?;
        let ticks = parse_stat(&stat)?.ticks;
        let mut threads = HashMap::new();
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .with_context(|| format!("list /proc/{pid}/task"))?;
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            // A thread may end between the listing and the read.
            if let Ok(line) = std::fs::read_to_string(task.path().join("stat"))
                && let Ok(s) = parse_stat(&line)
            {
                threads.insert(tid, (s.comm, s.ticks));
            }
        }
        Ok(CpuSample { ticks, threads })
    }

    /// CPU ticks used per thread name between `before` and `self`, largest
    /// first; threads born in between count from zero.
    pub fn by_thread_name_since(&self, before: &CpuSample) -> Vec<(String, u64)> {
        let mut by_name: HashMap<&str, u64> = HashMap::new();
        for (tid, (comm, ticks)) in &self.threads {
            let earlier = before.threads.get(tid).map_or(0, |(_, t)| *t);
            *by_name.entry(comm).or_default() += ticks.saturating_sub(earlier);
        }
        let mut v: Vec<(String, u64)> = by_name
            .into_iter()
            .map(|(n, t)| (n.to_owned(), t))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

/// Resident memory now and at its peak, in kB.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Memory {
    /// VmRSS.
    pub rss_kb: u64,
    /// VmHWM: the peak since the process started.
    pub hwm_kb: u64,
}

impl Memory {
    /// Reads `/proc/PID/status`.
    pub fn read(pid: u32) -> Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("read /proc/{pid}/status"))?;
        Ok(Memory {
            rss_kb: parse_status_kb(&status, "VmRSS").unwrap_or(0),
            hwm_kb: parse_status_kb(&status, "VmHWM").unwrap_or(0),
        })
    }
}

/// The whole machine's CPU time so far (the `cpu` line of `/proc/stat`),
/// in ticks summed over every core.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MachineCpu {
    /// Ticks spent running anything (user, nice, system, irq, softirq, steal).
    pub busy: u64,
    /// Ticks idle or waiting for I/O.
    pub idle: u64,
}

impl MachineCpu {
    /// Parses the `cpu` line of `/proc/stat`.
    pub fn parse(stat: &str) -> Option<MachineCpu> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        (v.len() >= 4).then(|| MachineCpu {
            busy: at(0) + at(1) + at(2) + at(5) + at(6) + at(7),
            idle: at(3) + at(4),
        })
    }

    /// Reads `/proc/stat`.
    pub fn read() -> Result<MachineCpu> {
        let stat = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
        MachineCpu::parse(&stat).ok_or_else(|| anyhow!("no cpu line in /proc/stat"))
    }
}

/// This process's CPU time (user + system) so far, in microseconds.
pub fn own_cpu_us() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage struct.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_of_a_tokio_worker() {
        let line = "4242 (tokio-runtime-w) S 1 4242 4242 0 -1 4194368 512 0 0 0 1234 567 0 0 20 0 4 0 100 1000000 300 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line).ok(),
            Some(Stat {
                comm: "tokio-runtime-w".into(),
                ticks: 1234 + 567
            })
        );
    }

    #[test]
    fn stat_name_with_spaces_and_parentheses() {
        let line = "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 10 5 0 0 20 0 1 0 1 1 1";
        assert_eq!(
            parse_stat(line).ok(),
            Some(Stat {
                comm: "a) b (c)".into(),
                ticks: 15
            })
        );
    }

    #[test]
    fn stat_line_cut_short_is_an_error() {
        assert!(parse_stat("7 (x) R 1 2 3").is_err());
        assert!(parse_stat("no name here").is_err());
    }

    #[test]
    fn status_values_in_kb() {
        let status = "Name:\tsluice\nVmHWM:\t   12345 kB\nVmRSS:\t    9876 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(9876));
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(12345));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
    }

    #[test]
    fn threads_grouped_by_name_since_an_earlier_sample() {
        let sample = |threads: &[(u32, &str, u64)]| CpuSample {
            ticks: 0,
            threads: threads
                .iter()
                .map(|&(id, n, t)| (id, (n.to_owned(), t)))
                .collect(),
        };
        let before = sample(&[(1, "main", 5), (2, "worker", 10), (3, "worker", 20)]);
        let after = sample(&[
            (1, "main", 6),
            (2, "worker", 30),
            (3, "worker", 25),
            (4, "new", 3),
        ]);
        assert_eq!(
            after.by_thread_name_since(&before),
            vec![("worker".into(), 25), ("new".into(), 3), ("main".into(), 1)]
        );
    }

    #[test]
    fn machine_cpu_from_proc_stat() {
        let stat = "cpu  100 2 30 500 7 1 4 9 0 0\ncpu0 50 1 15 250 3 0 2 4 0 0\nintr 1\n";
        assert_eq!(
            MachineCpu::parse(stat),
            Some(MachineCpu {
                busy: 100 + 2 + 30 + 1 + 4 + 9,
                idle: 507
            })
        );
        assert_eq!(MachineCpu::parse("intr 1\n"), None);
    }

    #[test]
    fn own_cpu_time_is_measured() {
        let spin = (0..2_000_000u64).fold(0u64, |a, b| a.wrapping_add(b * b));
        assert!(spin > 0);
        assert!(own_cpu_us() > 0);
    }
}
