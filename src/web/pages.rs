//! Pure HTML rendering of the monitoring web UI: the home page (`/`), the jobs
//! page (`/jobs`) and the directory listings of `/logs/` and `/items/`.
//!
//! Nothing in here touches the filesystem, the clock or the request: callers
//! gather the data and pass it in, which keeps every page unit-testable.
//!
//! The output mirrors Scrapyd 1.6.0 (`scrapyd/website.py`, which renders with
//! `textwrap.dedent`/`indent`) byte for byte for ordinary names, so tests and
//! scrapers written against Scrapyd keep working. Deliberate differences:
//!
//! * The base path (the `X-Forwarded-Prefix` value) is HTML-escaped; Scrapyd
//!   inserts it verbatim, which allows markup injection through the header.
//! * Log and item links are percent-encoded (like Twisted's directory listing
//!   does for its links) and HTML-escaped; Scrapyd inserts project, spider and
//!   job into those `href`s raw, so a job id containing `#`, `?`, `%` or `"`
//!   gave a broken (or injectable) link.
//! * The Logs link on the home page is omitted when logs are disabled (Scrapyd
//!   always shows it, and it then leads to a 404).
//! * Directory listings start with `<!DOCTYPE html>`, `<html lang="en">` and
//!   charset/viewport meta tags so that they are valid HTML5 like the other
//!   pages; Twisted's template has none of them. Everything else in the
//!   listing (classes, columns, cell texts) is as in Scrapyd.

use std::fmt::Write as _;

use chrono::{NaiveDateTime, TimeDelta};

/// Scrapyd's documentation, linked from the home page.
const DOCS_URL: &str = "https://scrapyd.readthedocs.io/en/latest/";

/// HTML-escapes `&`, `<`, `>`, `"` and `'`, exactly like Python's
/// `html.escape(s, quote=True)` (so `'` becomes `&#x27;`). Safe in text and in
/// double- or single-quoted attribute values.
#[must_use]
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            _ => out.push(c),
        }
    }
    out
}

/// Percent-encodes `s` like Python's `urllib.parse.quote(s, safe="/")`: every
/// UTF-8 byte except ASCII letters, digits, `_.-~` and `/` becomes `%XX`.
#[must_use]
pub fn url_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Decodes `%XX` escapes like Python's `urllib.parse.unquote` (invalid escapes
/// are kept literally, invalid UTF-8 becomes U+FFFD).
fn url_unquote(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(hi * 16 + lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Python's `textwrap.indent(text, prefix)`: prefixes every line that is not
/// whitespace-only.
fn indent(text: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(text.len() + prefix.len() * 8);
    for line in text.split_inclusive('\n') {
        if !line.trim().is_empty() {
            out.push_str(prefix);
        }
        out.push_str(line);
    }
    out
}

/// A datetime as Python's `str()` prints it once microseconds are dropped:
/// `2026-11-22 06:02:33`.
fn format_time(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A duration as Python's `str(timedelta)` prints it once microseconds are
/// dropped (Scrapyd's `no_microseconds`, which floors): `0:00:06`,
/// `1 day, 2:03:04`, `3 days, 0:00:00`, and for negative values (clock
/// changes) `-1 day, 23:59:59`.
#[must_use]
pub fn format_runtime(delta: TimeDelta) -> String {
    let mut secs = delta.num_seconds();
    if delta.subsec_nanos() < 0 {
        secs -= 1;
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let clock = format!("{}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    if days == 0 {
        clock
    } else {
        let plural = if days.abs() == 1 { "" } else { "s" };
        format!("{days} day{plural}, {clock}")
    }
}

/// A file size as Twisted's `static.formatFileSize` prints it: `12B`, `4K`,
/// `3M`, `1G` (truncating division by powers of 1024).
#[must_use]
pub fn format_file_size(size: u64) -> String {
    const K: u64 = 1024;
    if size < K {
        format!("{size}B")
    } else if size < K * K {
        format!("{}K", size / K)
    } else if size < K * K * K {
        format!("{}M", size / (K * K))
    } else {
        format!("{}G", size / (K * K * K))
    }
}

/// The content encoding Twisted's `static.File` derives from a file name:
/// `gzip` for `.gz`, `bzip2` for `.bz2` (case-insensitive, by the extension as
/// `os.path.splitext` sees it, so a dotfile named `.gz` has none).
#[must_use]
pub fn content_encoding(name: &str) -> Option<&'static str> {
    let stem_start = name.len() - name.trim_start_matches('.').len();
    let dot = name.rfind('.')?;
    if dot <= stem_start {
        return None;
    }
    match name[dot..].to_ascii_lowercase().as_str() {
        ".gz" => Some("gzip"),
        ".bz2" => Some("bzip2"),
        _ => None,
    }
}

/// A job waiting in a project's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRow {
    pub project: String,
    pub spider: String,
    pub job: String,
}

/// A running job. `log_url`/`items_url` are plain (not percent-encoded)
/// site-absolute paths such as `/logs/p/s/j.log`, set only when the file
/// exists; they are prefixed with the base path, percent-encoded and escaped
/// on output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningRow {
    pub project: String,
    pub spider: String,
    pub job: String,
    pub pid: Option<u32>,
    pub start: NaiveDateTime,
    pub log_url: Option<String>,
    pub items_url: Option<String>,
}

/// A finished job; `log_url`/`items_url` as in [`RunningRow`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedRow {
    pub project: String,
    pub spider: String,
    pub job: String,
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
    pub log_url: Option<String>,
    pub items_url: Option<String>,
    /// How the job ended (`finished`, `failed`, `cancelled`, …); shown in an extra last column.
    pub outcome: Option<String>,
}

/// One entry of a directory listing. `modified` is local wall-clock time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingEntry {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    pub modified: NaiveDateTime,
}

/// The `/` home page.
///
/// `base` is the prefix-header value (e.g. `X-Forwarded-Prefix: /path/to`)
/// or `""`; it is put before the links (escaped). `projects` are sorted here,
/// as Scrapyd does. `items_local` shows the Items link, `logs_enabled` the
/// Logs link.
#[must_use]
pub fn home(base: &str, projects: &[String], items_local: bool, logs_enabled: bool) -> String {
    let base = escape(base);
    let projects_html = if projects.is_empty() {
        "<p>No Scrapy projects yet.</p>".to_owned()
    } else {
        let mut sorted: Vec<&String> = projects.iter().collect();
        sorted.sort();
        let lis = sorted
            .iter()
            .map(|p| format!("<li>{}</li>", escape(p)))
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "<p>Scrapy projects:</p>\n<ul>\n{}\n</ul>",
            indent(&lis, "    ")
        )
    };
    // Scrapyd leaves an empty line where a hidden link would be.
    let items_li = if items_local {
        format!("        <li><a href=\"{base}/items/\">Items</a></li>")
    } else {
        String::new()
    };
    let logs_li = if logs_enabled {
        format!("        <li><a href=\"{base}/logs/\">Logs</a></li>")
    } else {
        String::new()
    };
    let projects_html = indent(&projects_html, "    ");
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Scrapyd</title>
    <style>
        body {{ font-family: system-ui, sans-serif; }}
    </style>
</head>
<body>
    <h1>Scrapyd</h1>

    <ul>
        <li><a href="{base}/jobs">Jobs</a></li>
{items_li}
{logs_li}
        <li><a href="{DOCS_URL}">Documentation</a></li>
    </ul>

{projects_html}

    <p>
        This web UI is for monitoring only. To upload projects and schedule crawls, use the API.
        For example, using <a href="https://curl.se/">curl</a>:
    </p>

    <p>
        <code>curl http://localhost:6800/schedule.json -d project=default -d spider=somespider</code>
    </p>

    <p>
        See the <a href="{DOCS_URL}">Scrapyd documentation</a> for details.
    </p>
</body>
</html>
"#
    )
}

/// The columns of the jobs table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Project,
    Spider,
    Job,
    Pid,
    Start,
    Runtime,
    Finish,
    Log,
    Items,
    Cancel,
    Outcome,
}

impl Column {
    fn title(self) -> &'static str {
        match self {
            Column::Project => "Project",
            Column::Spider => "Spider",
            Column::Job => "Job",
            Column::Pid => "PID",
            Column::Start => "Start",
            Column::Runtime => "Runtime",
            Column::Finish => "Finish",
            Column::Log => "Log",
            Column::Items => "Items",
            Column::Cancel => "Cancel",
            Column::Outcome => "Outcome",
        }
    }
}

/// What every row of the jobs table needs: the escaped base path, the
/// visible columns and the current time.
struct JobsTable {
    base: String,
    columns: Vec<Column>,
    now: NaiveDateTime,
}

impl JobsTable {
    /// Scrapyd's cancel form (the leading and trailing newlines included).
    fn cancel_button(&self, project: &str, job: &str) -> String {
        format!(
            "\n<form method=\"post\" onsubmit=\"return confirm('Are you sure?');\" action=\"{}/cancel.json\">\n\
             <input type=\"hidden\" name=\"project\" value=\"{}\">\n\
             <input type=\"hidden\" name=\"job\" value=\"{}\">\n\
             <input type=\"submit\" style=\"float: left;\" value=\"Cancel\">\n\
             </form>\n",
            self.base,
            escape(project),
            escape(job),
        )
    }

    /// A Log/Items link, if the file exists.
    fn link(&self, url: Option<&str>, text: &str) -> Option<String> {
        url.map(|u| {
            format!(
                "<a href=\"{}{}\">{text}</a>",
                self.base,
                escape(&url_quote(u))
            )
        })
    }

    /// The header row, indented into place.
    fn headers(&self) -> String {
        let ths = self
            .columns
            .iter()
            .map(|c| format!("<th>{}</th>", c.title()))
            .collect::<Vec<_>>()
            .join("\n");
        indent(
            &format!("<tr>\n{}\n</tr>", indent(&ths, "    ")),
            "            ",
        )
    }

    /// One `<tr>` with a cell per visible column; `cell` returns the (already
    /// escaped) content, `None` for an empty cell.
    fn row(&self, cell: impl Fn(Column) -> Option<String>) -> String {
        let tds = self
            .columns
            .iter()
            .map(|&c| format!("<td>{}</td>", cell(c).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n");
        format!("<tr>\n{}\n</tr>", indent(&tds, "    "))
    }

    /// The rows of one `<tbody>`, indented into place.
    fn section<T>(&self, rows: &[T], row: impl Fn(&Self, &T) -> String) -> String {
        let rows = rows.iter().map(|r| row(self, r)).collect::<Vec<_>>();
        indent(&rows.join("\n"), "            ")
    }

    fn pending_row(&self, r: &PendingRow) -> String {
        self.row(|c| match c {
            Column::Project => Some(escape(&r.project)),
            Column::Spider => Some(escape(&r.spider)),
            Column::Job => Some(escape(&r.job)),
            Column::Cancel => Some(self.cancel_button(&r.project, &r.job)),
            _ => None,
        })
    }

    fn running_row(&self, r: &RunningRow) -> String {
        self.row(|c| match c {
            Column::Project => Some(escape(&r.project)),
            Column::Spider => Some(escape(&r.spider)),
            Column::Job => Some(escape(&r.job)),
            Column::Pid => r.pid.map(|p| p.to_string()),
            Column::Start => Some(format_time(r.start)),
            Column::Runtime => Some(format_runtime(self.now - r.start)),
            Column::Finish => None,
            Column::Log => self.link(r.log_url.as_deref(), "Log"),
            Column::Items => self.link(r.items_url.as_deref(), "Items"),
            Column::Cancel => Some(self.cancel_button(&r.project, &r.job)),
            Column::Outcome => None,
        })
    }

    fn finished_row(&self, r: &FinishedRow) -> String {
        self.row(|c| match c {
            Column::Project => Some(escape(&r.project)),
            Column::Spider => Some(escape(&r.spider)),
            Column::Job => Some(escape(&r.job)),
            Column::Start => Some(format_time(r.start)),
            Column::Runtime => Some(format_runtime(r.end - r.start)),
            Column::Finish => Some(format_time(r.end)),
            Column::Log => self.link(r.log_url.as_deref(), "Log"),
            Column::Items => self.link(r.items_url.as_deref(), "Items"),
            Column::Outcome => r.outcome.as_deref().map(escape),
            Column::Pid | Column::Cancel => None,
        })
    }
}

/// The `/jobs` page.
///
/// `base` as in [`home`]. `now` is used for the Runtime of running jobs.
/// `items_local` adds the Items column, `cancel_enabled` (whether
/// `cancel.json` is served) the Cancel column with its forms, posting to
/// `{base}/cancel.json`. Rows are shown in the order given.
#[must_use]
pub fn jobs(
    base: &str,
    pending: &[PendingRow],
    running: &[RunningRow],
    finished: &[FinishedRow],
    now: NaiveDateTime,
    items_local: bool,
    cancel_enabled: bool,
) -> String {
    let mut columns = vec![
        Column::Project,
        Column::Spider,
        Column::Job,
        Column::Pid,
        Column::Start,
        Column::Runtime,
        Column::Finish,
        Column::Log,
    ];
    if items_local {
        columns.push(Column::Items);
    }
    if cancel_enabled {
        columns.push(Column::Cancel);
    }
    // scrapyd-rs: how finished jobs ended, last so Scrapyd's columns keep their places.
    if finished.iter().any(|r| r.outcome.is_some()) {
        columns.push(Column::Outcome);
    }
    let table = JobsTable {
        base: escape(base),
        columns,
        now,
    };
    let colspan = table.columns.len();
    let headers = table.headers();
    let pending_rows = table.section(pending, JobsTable::pending_row);
    let running_rows = table.section(running, JobsTable::running_row);
    let finished_rows = table.section(finished, JobsTable::finished_row);

    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Scrapyd</title>
    <style>
        body {{ font-family: system-ui, sans-serif; }}
        table {{ border-collapse: collapse; }}
        th, td {{ border-style: solid; border-width: 1px; }}
        tbody > tr:first-child {{ background-color: #eee; }}
        th, td {{ padding: .5rem; }}
        td:nth-child(2), td:nth-child(3) {{ word-break: break-all; }}
    </style>
</head>
<body>
    <h1>Jobs</h1>
    <p><a href="./">Go up</a></p>
    <table id="jobs">
        <thead>
{headers}
        </thead>
        <tbody>
            <tr>
                <th colspan="{colspan}">Pending</th>
            </tr>
{pending_rows}
        </tbody>
        <tbody>
            <tr>
                <th colspan="{colspan}">Running</th>
            </tr>
{running_rows}
        </tbody>
        <tbody>
            <tr>
                <th colspan="{colspan}">Finished</th>
            </tr>
{finished_rows}
        </tbody>
    </table>
</body>
</html>
"#
    )
}

/// A directory listing for `/logs/...` or `/items/...`, like Twisted's
/// `static.File` listing with Scrapyd's extra "Last modified" column.
///
/// `url_path` is the request path as received (percent-encoded, e.g.
/// `/logs/p1/`); like Twisted it is percent-decoded and escaped for the
/// title. `entries` may come in any order: directories are listed first, then
/// files, each sorted by name. Links are relative and percent-encoded.
#[must_use]
pub fn directory_listing(url_path: &str, entries: &[ListingEntry]) -> String {
    let header = format!("Directory listing for {}", escape(&url_unquote(url_path)));

    let mut sorted: Vec<&ListingEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));

    let mut table = String::new();
    for (i, e) in sorted.iter().enumerate() {
        let class = if i % 2 == 0 { "odd" } else { "even" };
        let (href, text, size, kind, encoding) = if e.is_dir {
            (
                format!("{}/", url_quote(&e.name)),
                format!("{}/", escape(&e.name)),
                String::new(),
                "[Directory]",
                String::new(),
            )
        } else {
            (
                url_quote(&e.name),
                escape(&e.name),
                format_file_size(e.size),
                "[text/plain]",
                content_encoding(&e.name)
                    .map(|enc| format!("[{enc}]"))
                    .unwrap_or_default(),
            )
        };
        let modified = e.modified.format("%Y-%m-%d %H:%M");
        let _ = write!(
            table,
            "<tr class=\"{class}\">\n    <td><a href=\"{href}\">{text}</a></td>\n    \
             <td>{size}</td>\n    <td>{modified}</td>\n    <td>{kind}</td>\n    \
             <td>{encoding}</td>\n</tr>\n"
        );
    }

    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{header}</title>
<style>
.even-dir {{ background-color: #efe0ef }}
.even {{ background-color: #eee }}
.odd-dir {{background-color: #f0d0ef }}
.odd {{ background-color: #dedede }}
.icon {{ text-align: center }}
.listing {{
    margin-left: auto;
    margin-right: auto;
    width: 50%;
    padding: 0.1em;
    }}

body {{ border: 0; padding: 0; margin: 0; background-color: #efefef; }}
h1 {{padding: 0.1em; background-color: #777; color: white; border-bottom: thin white dashed;}}

</style>
</head>

<body>
<h1>{header}</h1>

<table>
    <thead>
        <tr>
            <th>Filename</th>
            <th>Size</th>
            <th>Last modified</th>
            <th>Content type</th>
            <th>Content encoding</th>
        </tr>
    </thead>
    <tbody>
{table}
    </tbody>
</table>

</body>
</html>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn dt(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, us: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_micro_opt(h, mi, s, us)
            .unwrap()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    const HOSTILE: &str = "<script>alert(\"x&y\")</script>'";
    const HOSTILE_ESCAPED: &str = "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;&#x27;";

    /// The data of Scrapyd's own `test_jobs`: one job in each state.
    fn sample() -> (
        Vec<PendingRow>,
        Vec<RunningRow>,
        Vec<FinishedRow>,
        NaiveDateTime,
    ) {
        let pending = vec![PendingRow {
            project: "mybot".into(),
            spider: "spider1".into(),
            job: "j3-pending".into(),
        }];
        let running = vec![RunningRow {
            project: "p2".into(),
            spider: "s2".into(),
            job: "j2-running".into(),
            pid: Some(123),
            start: dt(2026, 11, 22, 6, 2, 33, 500_000),
            log_url: Some("/logs/p2/s2/j2-running.log".into()),
            items_url: None,
        }];
        let finished = vec![FinishedRow {
            project: "p1".into(),
            spider: "s1".into(),
            job: "j1-finished".into(),
            start: dt(2026, 11, 22, 5, 0, 0, 900_000),
            end: dt(2026, 11, 22, 6, 0, 6, 100_000),
            log_url: Some("/logs/p1/s1/j1-finished.log".into()),
            items_url: Some("/items/p1/s1/j1-finished.jl".into()),
            outcome: None,
        }];
        (
            pending,
            running,
            finished,
            dt(2026, 11, 22, 6, 2, 39, 400_000),
        )
    }

    fn sample_jobs(base: &str, items_local: bool, cancel_enabled: bool) -> String {
        let (pending, running, finished, now) = sample();
        jobs(
            base,
            &pending,
            &running,
            &finished,
            now,
            items_local,
            cancel_enabled,
        )
    }

    fn entry(name: &str, is_dir: bool, size: u64) -> ListingEntry {
        ListingEntry {
            name: name.into(),
            is_dir,
            size,
            modified: dt(2026, 11, 22, 6, 2, 59, 0),
        }
    }

    // ---- helpers -------------------------------------------------------

    #[test]
    fn escape_matches_python_html_escape() {
        assert_eq!(escape(HOSTILE), HOSTILE_ESCAPED);
        assert_eq!(escape("plain-name_1.0"), "plain-name_1.0");
        assert_eq!(escape("é€"), "é€");
        assert_eq!(escape(""), "");
    }

    #[test]
    fn url_quote_matches_python_quote_with_slash_safe() {
        assert_eq!(
            url_quote("/logs/p1/s1/j-1_a.b~c.log"),
            "/logs/p1/s1/j-1_a.b~c.log"
        );
        assert_eq!(
            url_quote("a b#c?d%e&f\"g'h<i>"),
            "a%20b%23c%3Fd%25e%26f%22g%27h%3Ci%3E"
        );
        assert_eq!(url_quote("Ä€"), "%C3%84%E2%82%AC");
    }

    #[test]
    fn url_unquote_matches_python_unquote() {
        assert_eq!(url_unquote("/logs/a%20b/"), "/logs/a b/");
        assert_eq!(url_unquote("%E2%82%AC%e2%82%ac"), "€€");
        assert_eq!(url_unquote("100%"), "100%");
        assert_eq!(url_unquote("%zz%4"), "%zz%4");
        assert_eq!(url_unquote("%E2x"), "\u{FFFD}x");
    }

    #[test]
    fn indent_skips_whitespace_only_lines_like_python() {
        assert_eq!(indent("a\n\n  \nb", "  "), "  a\n\n  \n  b");
        assert_eq!(indent("", "  "), "");
        assert_eq!(indent("\nx\n", "--"), "\n--x\n");
    }

    // ---- time formatting ------------------------------------------------

    #[test]
    fn runtime_is_python_timedelta_str_without_microseconds() {
        assert_eq!(format_runtime(TimeDelta::seconds(6)), "0:00:06");
        assert_eq!(format_runtime(TimeDelta::milliseconds(6_999)), "0:00:06");
        assert_eq!(format_runtime(TimeDelta::zero()), "0:00:00");
        assert_eq!(format_runtime(TimeDelta::seconds(59 * 60 + 59)), "0:59:59");
        assert_eq!(format_runtime(TimeDelta::hours(23)), "23:00:00");
        assert_eq!(
            format_runtime(TimeDelta::seconds(86_400 + 2 * 3600 + 3 * 60 + 4)),
            "1 day, 2:03:04"
        );
        assert_eq!(format_runtime(TimeDelta::days(3)), "3 days, 0:00:00");
        assert_eq!(
            format_runtime(TimeDelta::days(400) + TimeDelta::seconds(1)),
            "400 days, 0:00:01"
        );
        // Negative (clock went backwards): Python floors, then normalises.
        assert_eq!(format_runtime(TimeDelta::seconds(-1)), "-1 day, 23:59:59");
        assert_eq!(
            format_runtime(TimeDelta::milliseconds(-500)),
            "-1 day, 23:59:59"
        );
        assert_eq!(format_runtime(TimeDelta::days(-2)), "-2 days, 0:00:00");
    }

    #[test]
    fn times_drop_microseconds() {
        assert_eq!(
            format_time(dt(2026, 11, 22, 6, 2, 33, 999_999)),
            "2026-11-22 06:02:33"
        );
        assert_eq!(
            format_time(dt(2026, 1, 2, 3, 4, 5, 0)),
            "2026-01-02 03:04:05"
        );
    }

    #[test]
    fn file_sizes_are_formatted_like_twisted() {
        assert_eq!(format_file_size(0), "0B");
        assert_eq!(format_file_size(12), "12B");
        assert_eq!(format_file_size(1023), "1023B");
        assert_eq!(format_file_size(1024), "1K");
        assert_eq!(format_file_size(4 * 1024 + 1023), "4K");
        assert_eq!(format_file_size(1024 * 1024 - 1), "1023K");
        assert_eq!(format_file_size(3 * 1024 * 1024 + 5), "3M");
        assert_eq!(format_file_size(1 << 30), "1G");
        assert_eq!(format_file_size(5 << 40), "5120G");
    }

    #[test]
    fn content_encoding_follows_the_extension() {
        assert_eq!(content_encoding("job.log.gz"), Some("gzip"));
        assert_eq!(content_encoding("job.jl.GZ"), Some("gzip"));
        assert_eq!(content_encoding("job.log.bz2"), Some("bzip2"));
        assert_eq!(content_encoding("job.log"), None);
        assert_eq!(content_encoding("gz"), None);
        assert_eq!(content_encoding(".gz"), None);
        assert_eq!(content_encoding("..gz"), None);
        assert_eq!(content_encoding(".x.gz"), Some("gzip"));
        assert_eq!(content_encoding("job.gz.log"), None);
    }

    // ---- home page -------------------------------------------------------

    /// Scrapyd 1.6.0's `Home.render_GET` output for the same input.
    const HOME_GOLDEN: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Scrapyd</title>
    <style>
        body { font-family: system-ui, sans-serif; }
    </style>
</head>
<body>
    <h1>Scrapyd</h1>

    <ul>
        <li><a href="/path/to/jobs">Jobs</a></li>
        <li><a href="/path/to/items/">Items</a></li>
        <li><a href="/path/to/logs/">Logs</a></li>
        <li><a href="https://scrapyd.readthedocs.io/en/latest/">Documentation</a></li>
    </ul>

    <p>Scrapy projects:</p>
    <ul>
        <li>Zed</li>
        <li>p1</li>
        <li>slow</li>
    </ul>

    <p>
        This web UI is for monitoring only. To upload projects and schedule crawls, use the API.
        For example, using <a href="https://curl.se/">curl</a>:
    </p>

    <p>
        <code>curl http://localhost:6800/schedule.json -d project=default -d spider=somespider</code>
    </p>

    <p>
        See the <a href="https://scrapyd.readthedocs.io/en/latest/">Scrapyd documentation</a> for details.
    </p>
</body>
</html>
"#;

    #[test]
    fn home_is_byte_identical_to_scrapyd() {
        let html = home("/path/to", &strings(&["slow", "p1", "Zed"]), true, true);
        assert_eq!(html, HOME_GOLDEN);
    }

    #[test]
    fn home_has_what_the_scrapyd_tests_look_for() {
        let html = home("", &[], false, true);
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">\n"));
        assert!(html.contains("<meta charset=\"utf-8\">"));
        assert!(
            html.contains(
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            )
        );
        assert!(html.contains("<title>Scrapyd</title>"));
        assert!(html.contains("use the API"));
        assert!(html.contains("\"/jobs\""));
        assert!(html.contains("\"/logs/\""));
        assert!(html.contains("<a href=\"/jobs\">Jobs</a>"));
        assert!(html.contains("<a href=\"/logs/\">Logs</a>"));
        assert!(html.contains(
            "<code>curl http://localhost:6800/schedule.json -d project=default -d spider=somespider</code>"
        ));
        assert!(
            html.contains(
                "<a href=\"https://scrapyd.readthedocs.io/en/latest/\">Documentation</a>"
            )
        );
        assert!(html.contains("<p>No Scrapy projects yet.</p>"));
        assert!(!html.contains("Scrapy projects:"));
        assert!(html.ends_with("</html>\n"));
    }

    #[test]
    fn home_prefixes_links_with_the_base_path() {
        let html = home("/path/to", &[], true, true);
        assert!(html.contains("\"/path/to/jobs\""));
        assert!(html.contains("\"/path/to/logs/\""));
        assert!(html.contains("<a href=\"/path/to/jobs\">Jobs</a>"));
        assert!(html.contains("<a href=\"/path/to/logs/\">Logs</a>"));
        assert!(html.contains("<a href=\"/path/to/items/\">Items</a>"));
        assert!(!html.contains("\"/jobs\""));
    }

    #[test]
    fn home_toggles_items_and_logs_links() {
        let with = home("", &[], true, true);
        assert!(with.contains("/items/\">Items</a>"));
        let without = home("", &[], false, true);
        assert!(!without.contains("/items/\">Items</a>"));
        assert!(!without.contains("Items"));
        let no_logs = home("", &[], true, false);
        assert!(!no_logs.contains("/logs/"));
        assert!(!no_logs.contains(">Logs<"));
        assert!(no_logs.contains("<a href=\"/jobs\">Jobs</a>"));
    }

    #[test]
    fn home_lists_projects_sorted_and_escaped() {
        let html = home("", &strings(&["slow", HOSTILE, "Zed", "p1"]), false, true);
        assert!(html.contains("<p>Scrapy projects:</p>"));
        assert!(!html.contains("No Scrapy projects yet."));
        let pos = |s: &str| html.find(&format!("<li>{s}</li>")).unwrap();
        assert!(pos(HOSTILE_ESCAPED) < pos("Zed"));
        assert!(pos("Zed") < pos("p1"));
        assert!(pos("p1") < pos("slow"));
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn home_escapes_a_hostile_base_path() {
        let html = home("\"><script>x</script>", &[], true, true);
        assert!(!html.contains("<script>"));
        assert!(html.contains("<a href=\"&quot;&gt;&lt;script&gt;x&lt;/script&gt;/jobs\">"));
    }

    // ---- jobs page -------------------------------------------------------

    /// Scrapyd 1.6.0's `Jobs.render_GET` output for `sample()` with
    /// `X-Forwarded-Prefix: /path/to`, local items and cancel.json enabled.
    const JOBS_GOLDEN: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Scrapyd</title>
    <style>
        body { font-family: system-ui, sans-serif; }
        table { border-collapse: collapse; }
        th, td { border-style: solid; border-width: 1px; }
        tbody > tr:first-child { background-color: #eee; }
        th, td { padding: .5rem; }
        td:nth-child(2), td:nth-child(3) { word-break: break-all; }
    </style>
</head>
<body>
    <h1>Jobs</h1>
    <p><a href="./">Go up</a></p>
    <table id="jobs">
        <thead>
            <tr>
                <th>Project</th>
                <th>Spider</th>
                <th>Job</th>
                <th>PID</th>
                <th>Start</th>
                <th>Runtime</th>
                <th>Finish</th>
                <th>Log</th>
                <th>Items</th>
                <th>Cancel</th>
            </tr>
        </thead>
        <tbody>
            <tr>
                <th colspan="10">Pending</th>
            </tr>
            <tr>
                <td>mybot</td>
                <td>spider1</td>
                <td>j3-pending</td>
                <td></td>
                <td></td>
                <td></td>
                <td></td>
                <td></td>
                <td></td>
                <td>
                <form method="post" onsubmit="return confirm('Are you sure?');" action="/path/to/cancel.json">
                <input type="hidden" name="project" value="mybot">
                <input type="hidden" name="job" value="j3-pending">
                <input type="submit" style="float: left;" value="Cancel">
                </form>
                </td>
            </tr>
        </tbody>
        <tbody>
            <tr>
                <th colspan="10">Running</th>
            </tr>
            <tr>
                <td>p2</td>
                <td>s2</td>
                <td>j2-running</td>
                <td>123</td>
                <td>2026-11-22 06:02:33</td>
                <td>0:00:05</td>
                <td></td>
                <td><a href="/path/to/logs/p2/s2/j2-running.log">Log</a></td>
                <td></td>
                <td>
                <form method="post" onsubmit="return confirm('Are you sure?');" action="/path/to/cancel.json">
                <input type="hidden" name="project" value="p2">
                <input type="hidden" name="job" value="j2-running">
                <input type="submit" style="float: left;" value="Cancel">
                </form>
                </td>
            </tr>
        </tbody>
        <tbody>
            <tr>
                <th colspan="10">Finished</th>
            </tr>
            <tr>
                <td>p1</td>
                <td>s1</td>
                <td>j1-finished</td>
                <td></td>
                <td>2026-11-22 05:00:00</td>
                <td>1:00:05</td>
                <td>2026-11-22 06:00:06</td>
                <td><a href="/path/to/logs/p1/s1/j1-finished.log">Log</a></td>
                <td><a href="/path/to/items/p1/s1/j1-finished.jl">Items</a></td>
                <td></td>
            </tr>
        </tbody>
    </table>
</body>
</html>
"#;

    #[test]
    fn jobs_is_byte_identical_to_scrapyd() {
        assert_eq!(sample_jobs("/path/to", true, true), JOBS_GOLDEN);
    }

    #[test]
    fn jobs_has_what_the_scrapyd_tests_look_for() {
        let html = sample_jobs("", true, true);
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">\n"));
        assert!(html.contains("<meta charset=\"utf-8\">"));
        assert!(html.contains("<title>Scrapyd</title>"));
        assert!(html.contains("<h1>Jobs</h1>"));
        assert!(html.contains("<p><a href=\"./\">Go up</a></p>"));
        assert!(html.contains("<table id=\"jobs\">"));
        assert!(html.contains("Cancel"));
        for section in ["Pending", "Running", "Finished"] {
            assert!(html.contains(&format!("<th colspan=\"10\">{section}</th>")));
        }
        assert!(html.contains("<a href=\"/logs/p1/s1/j1-finished.log\">Log</a>"));
        assert!(html.contains("<a href=\"/logs/p2/s2/j2-running.log\">Log</a>"));
        assert!(html.contains("<a href=\"/items/p1/s1/j1-finished.jl\">Items</a>"));
        assert!(!html.contains("j3-pending.log"));
        assert!(!html.contains("j2-running.jl"));
        assert!(html.contains(" action=\"/cancel.json\">"));
        assert!(html.contains(" value=\"j2-running\">"));
        assert!(html.contains(" value=\"j3-pending\">"));
        assert!(!html.contains(" value=\"j1-finished\">"));
    }

    #[test]
    fn jobs_cancel_form_is_scrapyds() {
        let html = sample_jobs("", false, true);
        let form = "<form method=\"post\" onsubmit=\"return confirm('Are you sure?');\" \
                    action=\"/cancel.json\">\n\
                    <input type=\"hidden\" name=\"project\" value=\"mybot\">\n\
                    <input type=\"hidden\" name=\"job\" value=\"j3-pending\">\n\
                    <input type=\"submit\" style=\"float: left;\" value=\"Cancel\">\n\
                    </form>";
        let indented = indent(form, "                ");
        assert!(html.contains(&indented), "{html}");
        assert_eq!(html.matches("<form ").count(), 2);
        assert_eq!(html.matches("name=\"project\" value=\"p2\"").count(), 1);
    }

    #[test]
    fn jobs_columns_follow_the_toggles() {
        let cases = [
            (true, true, 10),
            (true, false, 9),
            (false, true, 9),
            (false, false, 8),
        ];
        for (items_local, cancel_enabled, columns) in cases {
            let html = sample_jobs("", items_local, cancel_enabled);
            assert_eq!(html.contains("<th>Items</th>"), items_local);
            assert_eq!(html.contains("<th>Cancel</th>"), cancel_enabled);
            assert_eq!(html.contains("/cancel.json\">"), cancel_enabled);
            assert_eq!(html.contains("<form"), cancel_enabled);
            assert_eq!(html.contains(">Items</a>"), items_local);
            assert_eq!(html.matches("<th colspan=\"").count(), 3);
            assert!(html.contains(&format!("<th colspan=\"{columns}\">Pending</th>")));
            // Every row has as many cells as there are columns.
            let rows = html.matches("<tr>").count();
            let cells = html.matches("<td>").count();
            assert_eq!(rows, 1 + 3 + 3, "header, section titles, jobs");
            assert_eq!(cells, 3 * columns);
            for header in [
                "Project", "Spider", "Job", "PID", "Start", "Runtime", "Finish", "Log",
            ] {
                assert!(html.contains(&format!("<th>{header}</th>")));
            }
        }
    }

    #[test]
    fn jobs_prefixes_links_and_cancel_action() {
        let html = sample_jobs("/path/to", true, true);
        assert!(html.contains("<a href=\"/path/to/logs/p1/s1/j1-finished.log\">Log</a>"));
        assert!(html.contains("<a href=\"/path/to/logs/p2/s2/j2-running.log\">Log</a>"));
        assert!(html.contains("<a href=\"/path/to/items/p1/s1/j1-finished.jl\">Items</a>"));
        assert!(html.contains(" action=\"/path/to/cancel.json\">"));
        assert!(!html.contains(" action=\"/cancel.json\">"));
        assert!(html.contains("<p><a href=\"./\">Go up</a></p>"));
    }

    #[test]
    fn jobs_times_runtimes_and_pids() {
        let html = sample_jobs("", false, false);
        // Running: start, now - start, pid.
        assert!(html.contains("<td>123</td>"));
        assert!(html.contains("<td>2026-11-22 06:02:33</td>\n                <td>0:00:05</td>"));
        // Finished: start, end - start, end.
        assert!(html.contains(
            "<td>2026-11-22 05:00:00</td>\n                <td>1:00:05</td>\n                \
             <td>2026-11-22 06:00:06</td>"
        ));

        let (_, mut running, mut finished, now) = sample();
        running[0].pid = None;
        running[0].start = dt(2026, 11, 20, 4, 1, 0, 1);
        finished[0].start = dt(2026, 11, 21, 0, 0, 0, 0);
        finished[0].end = dt(2026, 11, 22, 2, 3, 4, 0);
        let html = jobs("", &[], &running, &finished, now, false, false);
        assert!(html.contains("<td>j2-running</td>\n                <td></td>\n"));
        assert!(html.contains("<td>2 days, 2:01:39</td>"));
        assert!(html.contains("<td>1 day, 2:03:04</td>"));
    }

    #[test]
    fn jobs_omits_missing_links() {
        let (pending, mut running, mut finished, now) = sample();
        running[0].log_url = None;
        finished[0].log_url = None;
        finished[0].items_url = None;
        let html = jobs("", &pending, &running, &finished, now, true, true);
        assert!(!html.contains("<a href=\"/logs/"));
        assert!(!html.contains("<a href=\"/items/"));
        // Items links are not shown when items are not local, even if given.
        let (pending, running, finished, now) = sample();
        let html = jobs("", &pending, &running, &finished, now, false, true);
        assert!(!html.contains("/items/"));
    }

    #[test]
    fn jobs_empty_sections() {
        let now = dt(2026, 11, 22, 6, 2, 39, 0);
        let html = jobs("", &[], &[], &[], now, true, true);
        assert!(!html.contains("<td>"));
        assert!(
            html.contains("<th colspan=\"10\">Pending</th>\n            </tr>\n\n        </tbody>")
        );
    }

    #[test]
    fn jobs_escapes_hostile_values_everywhere() {
        let now = dt(2026, 11, 22, 6, 2, 39, 0);
        let start = dt(2026, 11, 22, 6, 0, 0, 0);
        let url =
            |kind: &str, ext: &str| Some(format!("/{kind}/{HOSTILE}/{HOSTILE}/{HOSTILE}.{ext}"));
        let pending = [PendingRow {
            project: HOSTILE.into(),
            spider: HOSTILE.into(),
            job: HOSTILE.into(),
        }];
        let running = [RunningRow {
            project: HOSTILE.into(),
            spider: HOSTILE.into(),
            job: HOSTILE.into(),
            pid: Some(1),
            start,
            log_url: url("logs", "log"),
            items_url: url("items", "jl"),
        }];
        let finished = [FinishedRow {
            project: HOSTILE.into(),
            spider: HOSTILE.into(),
            job: HOSTILE.into(),
            start,
            end: now,
            log_url: url("logs", "log"),
            items_url: url("items", "jl"),
            outcome: Some(HOSTILE.into()),
        }];
        let base = "/x\"><script>y</script>";
        let html = jobs(base, &pending, &running, &finished, now, true, true);
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("alert(\""));
        // Project, spider and job cells of the three rows, and the outcome cell.
        assert_eq!(
            html.matches(&format!("<td>{HOSTILE_ESCAPED}</td>")).count(),
            10
        );
        assert!(html.contains("<th>Outcome</th>"));
        // Hidden inputs of the two cancel forms.
        assert_eq!(
            html.matches(&format!(" value=\"{HOSTILE_ESCAPED}\">"))
                .count(),
            4
        );
        let base_escaped = "/x&quot;&gt;&lt;script&gt;y&lt;/script&gt;";
        assert!(html.contains(&format!(" action=\"{base_escaped}/cancel.json\">")));
        // Links: percent-encoded, so nothing is left to escape.
        let quoted = "%3Cscript%3Ealert%28%22x%26y%22%29%3C/script%3E%27";
        assert!(html.contains(&format!(
            "<a href=\"{base_escaped}/logs/{quoted}/{quoted}/{quoted}.log\">Log</a>"
        )));
        assert_eq!(
            html.matches(&format!("/items/{quoted}/{quoted}/{quoted}.jl\">Items</a>"))
                .count(),
            2
        );
        // Every attribute value is still well-delimited: quotes are balanced on each line.
        for line in html.lines() {
            assert_eq!(line.matches('"').count() % 2, 0, "{line}");
        }
    }

    #[test]
    fn jobs_links_are_percent_encoded() {
        let (pending, mut running, finished, now) = sample();
        running[0].log_url = Some("/logs/my project/s/a#b?c%d.log".into());
        let html = jobs("", &pending, &running, &finished, now, false, false);
        assert!(html.contains("<a href=\"/logs/my%20project/s/a%23b%3Fc%25d.log\">Log</a>"));
    }

    // ---- directory listing ---------------------------------------------

    #[test]
    fn listing_has_what_the_scrapyd_tests_look_for() {
        let html = directory_listing("/logs/", &[entry("mybot", true, 4096)]);
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">\n"));
        assert!(html.contains("<meta charset=\"utf-8\">"));
        assert!(html.contains("<title>Directory listing for /logs/</title>"));
        assert!(html.contains("<h1>Directory listing for /logs/</h1>"));
        assert!(html.contains("Last modified"));
        assert!(html.contains("<th>Last modified</th>"));
        assert!(html.contains("<td><a href=\"mybot/\">mybot/</a></td>"));
        let headers = [
            "Filename",
            "Size",
            "Last modified",
            "Content type",
            "Content encoding",
        ];
        let mut at = 0;
        for header in headers {
            let pos = html.find(&format!("<th>{header}</th>")).unwrap();
            assert!(pos > at);
            at = pos;
        }
    }

    #[test]
    fn listing_rows_match_twisted() {
        let html = directory_listing(
            "/logs/p1/",
            &[
                entry("job2.log", false, 4 * 1024 + 7),
                entry("sub", true, 4096),
                entry("job1.log.gz", false, 12),
            ],
        );
        let expected = "    <tbody>\n\
            <tr class=\"odd\">\n    <td><a href=\"sub/\">sub/</a></td>\n    <td></td>\n    \
            <td>2026-11-22 06:02</td>\n    <td>[Directory]</td>\n    <td></td>\n</tr>\n\
            <tr class=\"even\">\n    <td><a href=\"job1.log.gz\">job1.log.gz</a></td>\n    \
            <td>12B</td>\n    <td>2026-11-22 06:02</td>\n    <td>[text/plain]</td>\n    \
            <td>[gzip]</td>\n</tr>\n\
            <tr class=\"odd\">\n    <td><a href=\"job2.log\">job2.log</a></td>\n    \
            <td>4K</td>\n    <td>2026-11-22 06:02</td>\n    <td>[text/plain]</td>\n    \
            <td></td>\n</tr>\n\n    </tbody>";
        assert!(html.contains(expected), "{html}");
    }

    #[test]
    fn listing_puts_directories_first_then_files_by_name() {
        let html = directory_listing(
            "/logs/",
            &[
                entry("b.log", false, 1),
                entry("zdir", true, 0),
                entry("A.log", false, 1),
                entry("adir", true, 0),
                entry("a.log", false, 1),
                entry("Bdir", true, 0),
            ],
        );
        let order = [
            "Bdir/\"", "adir/\"", "zdir/\"", "A.log\"", "a.log\"", "b.log\"",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|n| html.find(&format!("href=\"{n}")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{html}");
        let classes: Vec<&str> = html
            .match_indices("<tr class=\"")
            .map(|(i, _)| &html[i + 11..i + 14])
            .collect();
        assert_eq!(classes, ["odd", "eve", "odd", "eve", "odd", "eve"]);
    }

    #[test]
    fn listing_escapes_and_quotes_hostile_names() {
        let name = "a b\"'<script>&.log";
        let html = directory_listing(
            "/logs/%3Cscript%3E/\"x\"/",
            &[entry(name, false, 5), entry(HOSTILE, true, 0)],
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains(
            "<td><a href=\"a%20b%22%27%3Cscript%3E%26.log\">a b&quot;&#x27;&lt;script&gt;&amp;.log</a></td>"
        ));
        assert!(html.contains(&format!(
            "<td><a href=\"%3Cscript%3Ealert%28%22x%26y%22%29%3C/script%3E%27/\">{HOSTILE_ESCAPED}/</a></td>"
        )));
        assert!(
            html.contains(
                "<title>Directory listing for /logs/&lt;script&gt;/&quot;x&quot;/</title>"
            )
        );
    }

    #[test]
    fn listing_decodes_the_title_and_handles_unicode() {
        let html = directory_listing("/items/caf%C3%A9/", &[entry("Ä.jl", false, 3 << 20)]);
        assert!(html.contains("<title>Directory listing for /items/café/</title>"));
        assert!(html.contains("<td><a href=\"%C3%84.jl\">Ä.jl</a></td>\n    <td>3M</td>"));
    }

    #[test]
    fn listing_of_an_empty_directory() {
        let html = directory_listing("/logs/", &[]);
        assert!(!html.contains("<tr class="));
        assert!(html.contains("    <tbody>\n\n    </tbody>"));
    }
}
