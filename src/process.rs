//! Processes of crawls: signals to process groups, signal names, and the identity of a process
//! (boot id and start time from `/proc`), which tells a re-adopted crawl from a process that
//! merely got the same pid after a reboot or pid reuse.

use nix::sys::signal::Signal;

/// Sends `signal` to the process group led by `pid`; returns whether it was delivered.
pub fn signal_group(pid: u32, signal: Signal) -> bool {
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), signal).is_ok()
}

/// Parses a signal as Scrapyd's `cancel.json` takes it: a name (`INT`, `TERM`, `KILL`, with or
/// without `SIG`) or a number.
pub fn parse_signal(text: &str) -> Option<Signal> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().ok()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `(state, start time in clock ticks since boot)` of a process, from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 overall is the 20th after the command name.
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// The live processes (zombies excluded) other than this one whose environment holds `entry`
/// (`NAME=value`) as one of its variables. Only processes of the daemon's own user are readable.
pub fn with_environment(entry: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == entry.as_bytes()))
        })
        .filter(|&pid| stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X'))
        .collect()
}

/// The command-line arguments of a process (empty when it is gone or unreadable).
pub fn arguments(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The identity of a live process: `<boot id>/<start ticks>`.
pub fn identity(pid: u32) -> Option<String> {
    let (_, start) = stat(pid)?;
    Some(format!("{}/{start}", boot_id()))
}

/// Whether the process `pid` still runs and is the one recorded as `identity` (a zombie
/// counts as gone).
pub fn is_alive(pid: u32, identity: &str) -> bool {
    match stat(pid) {
        Some((state, start)) => {
            state != 'Z' && state != 'X' && format!("{}/{start}", boot_id()) == identity
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signals_by_name_and_number() {
        assert_eq!(parse_signal("INT"), Some(Signal::SIGINT));
        assert_eq!(parse_signal("term"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("SIGKILL"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("FOO"), None);
        assert_eq!(parse_signal("999"), None);
    }

    #[test]
    fn knows_a_live_process_and_a_gone_one() {
        let me = std::process::id();
        let id = identity(me).expect("our own identity");
        assert!(is_alive(me, &id));
        assert!(!is_alive(me, "other-boot/1"));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let child_id = identity(pid);
        child.wait().unwrap();
        if let Some(child_id) = child_id {
            assert!(!is_alive(pid, &child_id));
        }
    }
}
