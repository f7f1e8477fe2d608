//! Sampling a server process: resident memory and CPU time from `/proc/PID`.

use std::time::Duration;

/// One sample of a process.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Sample {
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
}

fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Sample the processes `pids` (summed).
pub fn sample(pids: &[u32]) -> Sample {
    let tck = clk_tck();
    let mut s = Sample::default();
    for pid in pids {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
            {
                s.rss_bytes += kb * 1024;
            }
        }
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // Fields after the command name (which may hold spaces) start after ") ".
            if let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                let ut: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
                let st: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
                s.cpu_seconds += (ut + st) / tck;
            }
        }
    }
    s
}

/// Threads of process `pid` now.
pub fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// Peak RSS over `dur`, sampling every 100 ms.
pub async fn peak_rss(pids: &[u32], dur: Duration) -> u64 {
    let end = tokio::time::Instant::now() + dur;
    let mut peak = 0;
    while tokio::time::Instant::now() < end {
        peak = peak.max(sample(pids).rss_bytes);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    peak
}
