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

/// What `/proc/<pid>/stat` says of a process.
struct Stat {
    state: char,
    /// Its process group.
    group: u32,
    /// Start time, in clock ticks since boot.
    start: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        // Fields 5 and 22 overall are the 3rd and the 20th after the command name.
        group: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// The live process-group leaders other than this process (crawls lead their group) whose
/// arguments include `argument`; for each, whether its environment holds `entry`
/// (`NAME=value`) as one of its variables: `None` when it cannot be read (a process of another
/// user, a `/proc` mounted with `hidepid`).
pub fn leaders_with_argument(argument: &str, entry: &str) -> Vec<(u32, Option<bool>)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && arguments(pid).iter().any(|a| a == argument))
        .filter(|&pid| {
            stat(pid).is_some_and(|s| s.group == pid && s.state != 'Z' && s.state != 'X')
        })
        .map(|pid| {
            let environment = std::fs::read(format!("/proc/{pid}/environ"))
                .ok()
                .map(|env| env.split(|b| *b == 0).any(|v| v == entry.as_bytes()));
            (pid, environment)
        })
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
    let start = stat(pid)?.start;
    Some(format!("{}/{start}", boot_id()))
}

/// Whether the process `pid` still runs and is the one recorded as `identity` (a zombie
/// counts as gone).
pub fn is_alive(pid: u32, identity: &str) -> bool {
    match stat(pid) {
        Some(s) => {
            s.state != 'Z' && s.state != 'X' && format!("{}/{}", boot_id(), s.start) == identity
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

    #[test]
    fn finds_group_leaders_by_argument_and_environment() {
        use std::os::unix::process::CommandExt;
        let tag = format!("_job=find-{}", std::process::id());
        let entry = format!("SCRAPYD_RS_TEST={tag}");
        // The interpreter itself, not a launcher script (a pyenv shim execs it later, and its
        // arguments are not all there when `spawn` returns).
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import os, sys; print(os.path.realpath(sys.executable))",
            ])
            .output()
            .unwrap();
        let python = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let spawn = |leader: bool, with_entry: bool| {
            let mut cmd = std::process::Command::new(&python);
            cmd.args(["-c", "import time; time.sleep(600)", &tag]);
            if leader {
                cmd.process_group(0);
            }
            if with_entry {
                cmd.env("SCRAPYD_RS_TEST", &tag);
            }
            cmd.spawn().unwrap()
        };
        let mut children = [spawn(true, true), spawn(true, false), spawn(false, true)];
        // `spawn` returns once the child exists, maybe before it has exec'd the interpreter:
        // wait (with a deadline) until each one's arguments are its own.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let execd = |pid: u32| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == tag.as_bytes()))
        };
        while !children.iter().all(|c| execd(c.id())) {
            assert!(
                std::time::Instant::now() < deadline,
                "the test processes did not start within 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let found = leaders_with_argument(&tag, &entry);
        for child in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut found = found;
        found.sort();
        let mut expected = vec![
            (children[0].id(), Some(true)),
            (children[1].id(), Some(false)),
        ];
        expected.sort();
        assert_eq!(found, expected);
    }
}
