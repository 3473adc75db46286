//! CPU time of a process from `/proc/PID/stat` (user + system, all
//! threads), so a run can charge the server's CPU to the requests of a phase.

use std::time::Duration;

use super::LoadgenError;

/// Clock ticks per second of `/proc`'s times. Linux fixes USER_HZ at 100
/// in its user ABI on every mainstream architecture, whatever the kernel's
/// internal HZ, so it is not read from `sysconf` (which needs libc).
const USER_HZ: u64 = 100;

/// Cumulative CPU time of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CpuTime(pub Duration);

impl CpuTime {
    /// The CPU used between `self` (earlier) and `later`.
    pub fn until(self, later: CpuTime) -> Duration {
        later.0.saturating_sub(self.0)
    }
}

/// Reads the CPU time `pid` has used so far.
pub fn read_cpu_time(pid: u32) -> Result<CpuTime, LoadgenError> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| LoadgenError::Cpu {
        pid,
        reason: e.to_string(),
    })?;
    parse_stat(&text).ok_or_else(|| LoadgenError::Cpu {
        pid,
        reason: format!("unexpected format of {path}"),
    })
}

/// utime + stime (fields 14 and 15). The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat(text: &str) -> Option<CpuTime> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After the name: state (3), ppid (4), ... utime is field 14, i.e. the
    // 12th after the name.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime.checked_add(stime)?;
    Some(CpuTime(Duration::from_millis(ticks * 1000 / USER_HZ)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime_after_an_awkward_name() {
        let line = "4242 (trel lis) (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat(line), Some(CpuTime(Duration::from_millis(3250))));
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn reads_this_process() {
        let before = read_cpu_time(std::process::id()).expect("own /proc entry");
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = read_cpu_time(std::process::id()).expect("own /proc entry");
        assert!(after >= before);
    }
}
