//! The embedded Python runner (`runner.py`): written out once at start-up, it runs `scrapy list`
//! and `scrapy crawl` for one project version. This module installs it, lists spiders, and builds
//! the crawl command line exactly as Scrapyd does.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// The runner's source, embedded in the binary.
pub const RUNNER_SOURCE: &str = include_str!("runner.py");

/// The variable that gives the runner a project's extra eggs (a JSON list of paths).
const EXTRA_EGGS_ENV: &str = "SCRAPYD_RS_EXTRA_EGGS";

/// How long `scrapy list` may take before it is killed.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a project's code comes from.
#[derive(Debug, Clone)]
pub enum ProjectSource {
    /// A stored egg (path and version), and the project's extra eggs (its dependencies), put
    /// on `sys.path` after it in this order.
    Egg {
        path: PathBuf,
        version: String,
        extra: Vec<PathBuf>,
    },
    /// A `[settings]` project: its settings module, found through `scrapy.cfg` in the cwd.
    Settings { module: String },
}

/// The installed runner and the interpreter that runs it.
#[derive(Debug, Clone)]
pub struct Runner {
    python: String,
    /// The script's current path (re-written elsewhere if a temp cleaner removed it).
    script: std::sync::Arc<std::sync::Mutex<PathBuf>>,
    cwd: PathBuf,
}

/// Writes the script into a new private folder (mode 0700, random name, created fresh so no
/// other user can have prepared it) under the system temp folder.
fn write_script() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = std::env::temp_dir().join(format!("scrapyd-rs-{}", uuid::Uuid::new_v4().simple()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let script = dir.join("runner.py");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&script)?;
    std::io::Write::write_all(&mut file, RUNNER_SOURCE.as_bytes())?;
    Ok(script)
}

impl Runner {
    /// Writes the runner script (see [`write_script`]). [`Runner::remove`] deletes it.
    pub fn install(python: &str, cwd: &Path) -> std::io::Result<Runner> {
        Ok(Runner {
            python: python.to_owned(),
            script: std::sync::Arc::new(std::sync::Mutex::new(write_script()?)),
            cwd: cwd.to_owned(),
        })
    }

    /// The script's path, written again (in a new private folder) if it has disappeared —
    /// `/tmp` cleaners remove files of long-idle daemons.
    pub fn script(&self) -> PathBuf {
        let mut script = self.script.lock().unwrap_or_else(|e| e.into_inner());
        if !script.is_file() {
            match write_script() {
                Ok(path) => {
                    tracing::warn!(
                        "the runner script {} had disappeared: written again as {}",
                        script.display(),
                        path.display()
                    );
                    if let Some(old) = script.parent() {
                        let _ = std::fs::remove_dir_all(old);
                    }
                    *script = path;
                }
                Err(e) => tracing::error!("cannot write the runner script again: {e}"),
            }
        }
        script.clone()
    }

    /// The runner's private folder (also used for results when `dbs_dir = :memory:`).
    pub fn private_dir(&self) -> PathBuf {
        let script = self.script();
        script
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir)
    }

    /// Deletes the runner's folder (at shutdown).
    pub fn remove(&self) {
        let script = self.script.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = script.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// The interpreter.
    pub fn python(&self) -> &str {
        &self.python
    }

    /// A `Command` running `python runner.py <args…>` for `project` with Scrapyd's environment.
    pub fn command(&self, project: &str, source: &ProjectSource) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.arg(self.script())
            .env_remove("SCRAPYD_RS_RESULT")
            .env_remove("SCRAPYD_RS_NICE")
            .env_remove("SCRAPYD_RS_JOBDATA")
            .env_remove("SHUB_JOBKEY")
            .current_dir(&self.cwd)
            .env("SCRAPY_PROJECT", project);
        match source {
            ProjectSource::Egg {
                path,
                version,
                extra,
            } => {
                cmd.env("SCRAPYD_RS_EGG", path)
                    .env("SCRAPYD_EGG_VERSION", version);
                cmd.env_remove("SCRAPY_SETTINGS_MODULE");
                if extra.is_empty() {
                    cmd.env_remove(EXTRA_EGGS_ENV);
                } else {
                    let paths: Vec<String> =
                        extra.iter().map(|p| p.display().to_string()).collect();
                    cmd.env(
                        EXTRA_EGGS_ENV,
                        serde_json::to_string(&paths).unwrap_or_default(),
                    );
                }
            }
            ProjectSource::Settings { module } => {
                cmd.env_remove("SCRAPYD_RS_EGG")
                    .env_remove("SCRAPYD_EGG_VERSION")
                    .env_remove(EXTRA_EGGS_ENV);
                cmd.env("SCRAPY_SETTINGS_MODULE", module);
            }
        }
        cmd
    }

    /// Runs `scrapy list` for a project version and returns the spider names, or the runner's
    /// error output when it fails.
    pub async fn list_spiders(
        &self,
        project: &str,
        source: &ProjectSource,
    ) -> Result<Vec<String>, String> {
        let mut cmd = self.command(project, source);
        cmd.args(["list", "-s", "LOG_STDOUT=0"])
            .env("PYTHONIOENCODING", "UTF-8")
            // Listing is background work: requests (and crawls) come first for the CPU.
            .env("SCRAPYD_RS_NICE", "10")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.python))?;
        let pid = child.id();
        let output = match tokio::time::timeout(LIST_TIMEOUT, child.wait_with_output()).await {
            Ok(result) => result.map_err(|e| format!("{}: {e}", self.python))?,
            Err(_) => {
                if let Some(pid) = pid {
                    crate::launcher::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
                }
                return Err(format!(
                    "scrapy list did not finish within {} s",
                    LIST_TIMEOUT.as_secs()
                ));
            }
        };
        if !output.status.success() {
            let err = String::from_utf8_lossy(&output.stderr).into_owned();
            let out = String::from_utf8_lossy(&output.stdout).into_owned();
            return Err(if err.trim().is_empty() { out } else { err });
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        Ok(stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }
}

/// The arguments after `python runner.py` for a crawl, in Scrapyd's order:
/// `crawl SPIDER -s K=V … -a _job=ID [-a _version=V] -a key=val …`.
pub fn crawl_args(
    spider: &str,
    settings: &[(String, String)],
    job: &str,
    version: Option<&str>,
    args: &[(String, String)],
) -> Vec<String> {
    let mut out = vec!["crawl".to_owned(), spider.to_owned()];
    for (k, v) in settings {
        out.push("-s".to_owned());
        out.push(format!("{k}={v}"));
    }
    out.push("-a".to_owned());
    out.push(format!("_job={job}"));
    if let Some(v) = version {
        out.push("-a".to_owned());
        out.push(format!("_version={v}"));
    }
    for (k, v) in args {
        out.push("-a".to_owned());
        out.push(format!("{k}={v}"));
    }
    out
}

/// A `file://` URI for an absolute path, percent-encoding what a URI parser would misread.
pub fn file_uri(path: &Path) -> String {
    let mut out = String::from("file://");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crawl_args_follow_scrapyd() {
        let args = crawl_args(
            "s1",
            &[("ONE".into(), "two".into())],
            "j1",
            Some("1.0"),
            &[("arg1".into(), "val1".into())],
        );
        assert_eq!(
            args,
            [
                "crawl",
                "s1",
                "-s",
                "ONE=two",
                "-a",
                "_job=j1",
                "-a",
                "_version=1.0",
                "-a",
                "arg1=val1"
            ]
        );
    }

    #[test]
    fn a_removed_script_is_written_again() {
        let runner = Runner::install("python3", Path::new("/")).unwrap();
        let first = runner.script();
        assert_eq!(std::fs::read_to_string(&first).unwrap(), RUNNER_SOURCE);
        std::fs::remove_dir_all(first.parent().unwrap()).unwrap();
        let second = runner.script();
        assert_ne!(first, second);
        assert_eq!(std::fs::read_to_string(&second).unwrap(), RUNNER_SOURCE);
        runner.remove();
        assert!(!second.parent().unwrap().exists());
    }

    #[test]
    fn file_uris_are_encoded() {
        assert_eq!(
            file_uri(Path::new("/a b/ü#.jl")),
            "file:///a%20b/%C3%BC%23.jl"
        );
    }
}
