//! The filesystem egg store: `{eggs_dir}/{project}/{version}.egg`, with the spider list of each
//! version kept beside it (`{version}.spiders`, JSON) so listing spiders never starts Python.
//! A project's extra eggs (its dependencies: Scrapy Cloud's `eggs/add.json`, `shub deploy`'s
//! `eggs`) are in `{eggs_dir}/{project}/deps/`: `{name}.json` (name, version, file) points at
//! the egg, stored under a name of its own for each upload (`{name}-{uuid}.egg`), so replacing
//! or deleting an extra egg never changes a file a running crawl may still import from; the
//! eggs nothing points at are removed at a start with no crawl left running. They go on the
//! `sys.path` of every crawl and listing of the project, after its own egg.
//!
//! Uploads are written to a temporary file in the project folder, listed with the runner, and
//! only then renamed into place: a failed upload stores nothing. Versions are ordered as Python's
//! `packaging` orders them (PEP 440), falling back to plain string order, as Scrapyd does.
//!
//! **On a cluster** (PostgreSQL storage) the database holds the eggs ([`EggTables`]: bytes by
//! SHA-256, versions with their spider lists, extra eggs) and each node's `eggs_dir` is its
//! mirror of them, in the layout above, so everything that reads eggs reads local files as on a
//! single node. A change is written to the database first (nothing is stored when that fails),
//! then to the mirror; [`EggStore::sync`] brings the mirror to the database's egg version
//! (fetching the eggs whose hash it lacks, removing those gone) before a request or a claim
//! reads it.

use crate::error::ApiError;
use crate::names;
use crate::runner::{ProjectSource, Runner};
use crate::storage::model::{EggIndex, SharedExtraEgg, sha256_hex};
use crate::storage::postgres::{EggBytes, EggTables};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};

const EGG_SUFFIX: &str = ".egg";
/// The folder of a project's extra eggs.
const EXTRA_DIR: &str = "deps";
const SPIDERS_SUFFIX: &str = ".spiders";
const UPLOAD_PREFIX: &str = ".upload-";

/// Largest total uncompressed size accepted for an egg (zip bomb guard).
pub const MAX_EGG_UNCOMPRESSED: u64 = 1 << 30;
/// Largest number of entries accepted in an egg.
pub const MAX_EGG_ENTRIES: usize = 100_000;

/// Orders versions as Scrapyd does: by PEP 440 when every version is valid, else as strings.
pub fn sort_versions(versions: &mut [String]) {
    let parsed: Option<Vec<pep440_rs::Version>> = versions
        .iter()
        .map(|v| pep440_rs::Version::from_str(v.trim()).ok())
        .collect();
    match parsed {
        Some(parsed) => {
            let mut pairs: Vec<(pep440_rs::Version, String)> =
                parsed.into_iter().zip(versions.iter().cloned()).collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            for (slot, (_, v)) in versions.iter_mut().zip(pairs) {
                *slot = v;
            }
        }
        // Scrapyd compares its stored (sanitized) names; comparing that form keeps eggs stored
        // by Scrapyd (`1_0`) and by us (`1.1`) in one order.
        None => versions.sort_by(|a, b| {
            scrapyd_sanitized(a)
                .cmp(&scrapyd_sanitized(b))
                .then_with(|| a.cmp(b))
        }),
    }
}

/// Scrapyd's file-name form of a version (`1.0` → `1_0`), used to find eggs Scrapyd stored.
pub fn scrapyd_sanitized(version: &str) -> String {
    version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Checks that `data` is a zip archive of sane size; the message is Scrapyd's for a non-zip.
pub fn check_egg(data: &[u8]) -> Result<(), ApiError> {
    let not_zip =
        || ApiError::new("egg is not a ZIP file (if using curl, use egg=@path not egg=path)");
    let archive = zip::ZipArchive::new(std::io::Cursor::new(data)).map_err(|_| not_zip())?;
    if archive.len() > MAX_EGG_ENTRIES {
        return Err(ApiError::new(format!(
            "egg has {} entries (at most {MAX_EGG_ENTRIES})",
            archive.len()
        )));
    }
    let total: u64 = archive
        .decompressed_size()
        .map(|s| s as u64)
        .unwrap_or(u64::MAX);
    if total > MAX_EGG_UNCOMPRESSED {
        return Err(ApiError::new(format!(
            "egg uncompresses to more than {} MiB",
            MAX_EGG_UNCOMPRESSED >> 20
        )));
    }
    Ok(())
}

/// Spider lists by (project, version).
type SpiderLists = HashMap<(String, String), Arc<Vec<String>>>;

/// The egg store and the set of projects the daemon knows.
pub struct EggStore {
    root: PathBuf,
    /// `[settings]` projects: name → settings module.
    settings: Vec<(String, String)>,
    /// Project folders found in `root`, refreshed at start and after every change.
    egg_projects: RwLock<Vec<String>>,
    /// Spider lists by (project, version); `[settings]` projects use version "".
    spiders: Mutex<SpiderLists>,
    /// Serializes changes (commit of an upload, deletions).
    changes: tokio::sync::RwLock<()>,
    runner: Runner,
    /// On a cluster: the database this folder mirrors, and the mirror's state.
    shared: Option<Mirror>,
}

/// The state of a node's mirror of the cluster's eggs.
struct Mirror {
    tables: EggTables,
    /// The egg version the folder was last brought to (`u64::MAX`: never).
    synced: std::sync::atomic::AtomicU64,
    /// The hash of each mirrored egg file (`{project}/{version}.egg`, `{project}/deps/{name}`).
    hashes: Mutex<HashMap<PathBuf, String>>,
}

impl EggStore {
    /// Opens the store at `root` (created if missing) and removes leftovers of interrupted uploads.
    pub fn open(
        root: &Path,
        settings: Vec<(String, String)>,
        runner: Runner,
        shared: Option<EggTables>,
    ) -> std::io::Result<EggStore> {
        std::fs::create_dir_all(root)?;
        let store = EggStore {
            root: root.to_owned(),
            settings,
            egg_projects: RwLock::new(Vec::new()),
            spiders: Mutex::new(HashMap::new()),
            changes: tokio::sync::RwLock::new(()),
            runner,
            shared: shared.map(|tables| Mirror {
                tables,
                synced: std::sync::atomic::AtomicU64::new(u64::MAX),
                hashes: Mutex::new(HashMap::new()),
            }),
        };
        for entry in std::fs::read_dir(root)?.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(UPLOAD_PREFIX)
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        for project in store.scan_projects()? {
            if let Ok(entries) = std::fs::read_dir(store.root.join(&project)) {
                for entry in entries.flatten() {
                    if entry
                        .file_name()
                        .to_string_lossy()
                        .starts_with(UPLOAD_PREFIX)
                    {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
        store.refresh()?;
        Ok(store)
    }

    /// The runner used for listings.
    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    fn scan_projects(&self) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.root)? {
            let entry = entry?;
            if entry.file_type()?.is_dir()
                && let Ok(name) = entry.file_name().into_string()
                && names::is_safe(&name)
            {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Re-reads the project folders (Scrapyd refreshes its project list only after changes).
    pub fn refresh(&self) -> std::io::Result<()> {
        let projects = self.scan_projects()?;
        *self.egg_projects.write().unwrap_or_else(|e| e.into_inner()) = projects;
        Ok(())
    }

    /// Every known project: egg projects (sorted), then `[settings]` projects not among them.
    pub fn projects(&self) -> Vec<String> {
        let mut out = self
            .egg_projects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (name, _) in &self.settings {
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
        out
    }

    /// Whether `project` is known (has eggs or is in `[settings]`).
    pub fn is_known(&self, project: &str) -> bool {
        self.settings.iter().any(|(n, _)| n == project)
            || self
                .egg_projects
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|p| p == project)
    }

    /// The settings module of a `[settings]` project.
    pub fn settings_module(&self, project: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(n, _)| n == project)
            .map(|(_, m)| m.as_str())
    }

    fn project_dir(&self, project: &str) -> Result<PathBuf, ApiError> {
        names::check(project)?;
        Ok(self.root.join(project))
    }

    /// The versions of `project`, ordered, as uploaded. Unknown project → empty.
    pub fn versions(&self, project: &str) -> Result<Vec<String>, ApiError> {
        let dir = self.project_dir(project)?;
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(ApiError::internal("OSError", e)),
        };
        for entry in entries.flatten() {
            if let Ok(name) = entry.file_name().into_string()
                && let Some(stem) = name.strip_suffix(EGG_SUFFIX)
                && !name.starts_with(UPLOAD_PREFIX)
                && names::is_safe(stem)
                && entry.file_type().map(|t| t.is_file()).unwrap_or(false)
            {
                out.push(stem.to_owned());
            }
        }
        sort_versions(&mut out);
        Ok(out)
    }

    /// Finds the stored version matching `version` (as uploaded, or as Scrapyd stored it), or the
    /// latest when `None`. Returns the version's stored name.
    pub fn resolve(
        &self,
        project: &str,
        version: Option<&str>,
    ) -> Result<Option<String>, ApiError> {
        let versions = self.versions(project)?;
        Ok(match version {
            None => versions.last().cloned(),
            Some(v) => {
                names::check(v)?;
                if versions.iter().any(|s| s == v) {
                    Some(v.to_owned())
                } else {
                    let sanitized = scrapyd_sanitized(v);
                    versions.into_iter().find(|s| *s == sanitized)
                }
            }
        })
    }

    /// Path of a stored egg.
    pub fn egg_path(&self, project: &str, version: &str) -> PathBuf {
        self.root
            .join(project)
            .join(format!("{version}{EGG_SUFFIX}"))
    }

    /// What the runner needs to run `project` at `version` (latest when `None`).
    pub fn source(&self, project: &str, version: Option<&str>) -> Result<ProjectSource, ApiError> {
        match self.resolve(project, version)? {
            Some(v) => Ok(ProjectSource::Egg {
                path: self.egg_path(project, &v),
                version: v,
                extra: self
                    .extra_eggs(project)?
                    .into_iter()
                    .map(|e| e.path)
                    .collect(),
            }),
            None => match (version, self.settings_module(project)) {
                (None, Some(module)) => Ok(ProjectSource::Settings {
                    module: module.to_owned(),
                }),
                (Some(v), _) => Err(ApiError::version_not_found(v)),
                (None, None) => Err(ApiError::project_not_found(project)),
            },
        }
    }

    /// The spiders of `project` at `version` (latest when `None`): from the cache, the stored
    /// list, or (for eggs stored by another program, and `[settings]` projects) one listing.
    pub async fn spiders(
        &self,
        project: &str,
        version: Option<&str>,
    ) -> Result<Arc<Vec<String>>, ApiError> {
        let source = self.source(project, version)?;
        let key = match &source {
            ProjectSource::Egg { version, .. } => (project.to_owned(), version.clone()),
            ProjectSource::Settings { .. } => (project.to_owned(), String::new()),
        };
        if let Some(list) = self
            .spiders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(list.clone());
        }
        let stored = match &source {
            ProjectSource::Egg { version, .. } => self.read_spider_file(project, version),
            ProjectSource::Settings { .. } => None,
        };
        let list = match stored {
            Some(list) => list,
            None => {
                let list = self
                    .runner
                    .list_spiders(project, &source)
                    .await
                    .map_err(|stderr| ApiError::new(format!("RunnerError: {stderr}")))?;
                if let ProjectSource::Egg { version, .. } = &source {
                    let _ = self.write_spider_file(project, version, &list);
                }
                list
            }
        };
        let list = Arc::new(list);
        self.spiders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, list.clone());
        Ok(list)
    }

    fn spider_file(&self, project: &str, version: &str) -> PathBuf {
        self.root
            .join(project)
            .join(format!("{version}{SPIDERS_SUFFIX}"))
    }

    fn read_spider_file(&self, project: &str, version: &str) -> Option<Vec<String>> {
        let text = std::fs::read(self.spider_file(project, version)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn write_spider_file(
        &self,
        project: &str,
        version: &str,
        list: &[String],
    ) -> std::io::Result<()> {
        let path = self.spider_file(project, version);
        let tmp = self.root.join(project).join(format!(
            "{UPLOAD_PREFIX}{}.tmp",
            uuid::Uuid::new_v4().simple()
        ));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(list).unwrap_or_default())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    }

    /// Takes the lock that serializes changes to the store (commits, deletions), exclusive of
    /// every [`EggStore::hold_projects`].
    pub async fn lock_changes(&self) -> Changes<'_> {
        Changes(self.changes.write().await)
    }

    /// Keeps the set of projects from changing while held (shared: many holders at once), so
    /// a holder can queue a job for a project without racing its deletion.
    pub async fn hold_projects(&self) -> ProjectsHeld<'_> {
        ProjectsHeld(self.changes.read().await)
    }

    /// Stores an egg (and extra eggs that come with it, which replace those of the same
    /// name): checks them, lists the spiders from temporary copies, and only when that succeeds
    /// moves them into place. Returns the number of spiders. If the request is abandoned midway
    /// (client gone), the temporary files are removed and nothing is stored.
    pub async fn add(
        &self,
        project: &str,
        version: &str,
        egg: &[u8],
        extra: &[NewExtraEgg<'_>],
    ) -> Result<usize, ApiError> {
        check_egg(egg)?;
        let dir = self.project_dir(project)?;
        names::check(version)?;
        for e in extra {
            e.check()?;
        }
        let tmp = self.upload(egg)?;
        let extra_tmp = extra
            .iter()
            .map(|e| self.upload(e.data))
            .collect::<Result<Vec<_>, _>>()?;
        // The listing sees the extra eggs as they will be: the new ones replace their names.
        let mut listed_extra: Vec<(String, PathBuf)> = self
            .extra_eggs(project)?
            .into_iter()
            .filter(|old| extra.iter().all(|e| e.name != old.name))
            .map(|old| (old.name, old.path))
            .collect();
        listed_extra.extend(
            extra
                .iter()
                .zip(&extra_tmp)
                .map(|(e, t)| (e.name.to_owned(), t.0.clone())),
        );
        listed_extra.sort();
        let source = ProjectSource::Egg {
            path: tmp.0.clone(),
            version: version.to_owned(),
            extra: listed_extra.into_iter().map(|(_, p)| p).collect(),
        };
        let list = self
            .runner
            .list_spiders(project, &source)
            .await
            .map_err(|stderr| ApiError::new(format!("RunnerError: {stderr}")))?;
        let _changes = self.lock_changes().await;
        // On a cluster the database is written first: when it refuses, nothing is stored.
        if let Some(m) = &self.shared {
            let extras = extra
                .iter()
                .map(|e| {
                    let sha256 = sha256_hex(e.data);
                    let about = SharedExtraEgg {
                        project: project.to_owned(),
                        name: e.name.to_owned(),
                        version: e.version.to_owned(),
                        sha256: sha256.clone(),
                    };
                    (
                        about,
                        EggBytes {
                            sha256,
                            data: e.data,
                        },
                    )
                })
                .collect();
            let bytes = EggBytes {
                sha256: sha256_hex(egg),
                data: egg,
            };
            m.tables
                .store(project, version, bytes, &list, extras)
                .await?;
        }
        // No await below: the commit cannot be abandoned halfway; a failed step undoes the
        // steps before it.
        let created_dir = !dir.is_dir();
        let mut undo = Undo::default();
        let commit = (|| {
            std::fs::create_dir_all(&dir)?;
            for (e, t) in extra.iter().zip(&extra_tmp) {
                self.commit_extra(project, e, &t.0, &mut undo)?;
            }
            self.write_spider_file(project, version, &list)?;
            std::fs::rename(&tmp.0, self.egg_path(project, version))
        })();
        if let Err(e) = commit {
            let _ = std::fs::remove_file(self.spider_file(project, version));
            undo.run();
            if created_dir {
                let _ = std::fs::remove_dir(self.extra_dir(project));
                let _ = std::fs::remove_dir(&dir);
            }
            return Err(ApiError::internal(
                "OSError",
                format!("cannot store the egg: {e}"),
            ));
        }
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        if let Some(m) = &self.shared {
            let mut hashes = m.hashes.lock().unwrap_or_else(|e| e.into_inner());
            hashes.insert(self.egg_path(project, version), sha256_hex(egg));
            for e in extra {
                hashes.insert(self.extra_pointer(project, e.name), sha256_hex(e.data));
            }
        }
        let count = list.len();
        self.spiders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((project.to_owned(), version.to_owned()), Arc::new(list));
        self.refresh()
            .map_err(|e| ApiError::internal("OSError", e))?;
        Ok(count)
    }

    /// Writes an upload to a temporary file in `eggs_dir` itself (a file, never taken for a
    /// project), fsync'd; removed when dropped unless moved into place.
    fn upload(&self, data: &[u8]) -> Result<TempFile, ApiError> {
        let tmp = TempFile(self.root.join(format!(
            "{UPLOAD_PREFIX}{}.tmp",
            uuid::Uuid::new_v4().simple()
        )));
        let write = (|| {
            let mut f = std::fs::File::create(&tmp.0)?;
            f.write_all(data)?;
            f.sync_all()
        })();
        match write {
            Ok(()) => Ok(tmp),
            Err(e) => Err(ApiError::internal(
                "OSError",
                format!("cannot store the egg: {e}"),
            )),
        }
    }

    fn extra_dir(&self, project: &str) -> PathBuf {
        self.root.join(project).join(EXTRA_DIR)
    }

    /// Moves an uploaded extra egg into place under a new file name, then points its name at
    /// it (one rename: a listing sees the old egg or the new one); what it changed goes to
    /// `undo`. The project folder exists.
    fn commit_extra(
        &self,
        project: &str,
        e: &NewExtraEgg<'_>,
        upload: &Path,
        undo: &mut Undo,
    ) -> std::io::Result<()> {
        let dir = self.extra_dir(project);
        std::fs::create_dir_all(&dir)?;
        let file = format!("{}-{}{EGG_SUFFIX}", e.name, uuid::Uuid::new_v4().simple());
        std::fs::rename(upload, dir.join(&file))?;
        undo.remove.push(dir.join(&file));
        let pointer = dir.join(format!("{}.json", e.name));
        let about = serde_json::json!({"name": e.name, "version": e.version, "file": file});
        let tmp = dir.join(format!(
            "{UPLOAD_PREFIX}{}.tmp",
            uuid::Uuid::new_v4().simple()
        ));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(about.to_string().as_bytes())?;
        f.sync_all()?;
        let before = std::fs::read(&pointer).ok();
        if let Err(err) = std::fs::rename(&tmp, &pointer) {
            let _ = std::fs::remove_file(&tmp);
            return Err(err);
        }
        undo.restore.push((pointer, before));
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Removes the extra eggs that no name points at (replaced or deleted ones). Only safe
    /// when no crawl runs: one started before a replacement may still import from its egg.
    pub fn remove_unused_extra_eggs(&self) {
        for project in self.scan_projects().unwrap_or_default() {
            let dir = self.extra_dir(&project);
            let Ok(used) = self.extra_eggs(&project) else {
                continue;
            };
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let unused = (name.ends_with(EGG_SUFFIX) && used.iter().all(|e| e.path != path))
                    || name.starts_with(UPLOAD_PREFIX);
                if unused {
                    tracing::info!("removing the unused extra egg {}", path.display());
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }

    /// A project's extra eggs, by name.
    pub fn extra_eggs(&self, project: &str) -> Result<Vec<ExtraEgg>, ApiError> {
        let dir = self.project_dir(project)?.join(EXTRA_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ApiError::internal("OSError", e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Ok(file) = entry.file_name().into_string() else {
                continue;
            };
            let Some(name) = file.strip_suffix(".json") else {
                continue;
            };
            let about: Option<serde_json::Value> = std::fs::read(entry.path())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let Some(about) = about else {
                continue;
            };
            let file = about["file"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{name}{EGG_SUFFIX}"));
            let path = dir.join(&file);
            if names::is_safe(&file) && !name.starts_with(UPLOAD_PREFIX) && path.is_file() {
                out.push(ExtraEgg {
                    name: name.to_owned(),
                    version: about["version"].as_str().unwrap_or_default().to_owned(),
                    path,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Adds (or replaces) an extra egg of a project; a project that has no folder yet gets
    /// one (it is then known, with no version).
    pub async fn add_extra_egg(
        &self,
        project: &str,
        egg: &NewExtraEgg<'_>,
    ) -> Result<(), ApiError> {
        self.project_dir(project)?;
        egg.check()?;
        check_egg(egg.data)?;
        let tmp = self.upload(egg.data)?;
        let _changes = self.lock_changes().await;
        let sha256 = sha256_hex(egg.data);
        if let Some(m) = &self.shared {
            let about = SharedExtraEgg {
                project: project.to_owned(),
                name: egg.name.to_owned(),
                version: egg.version.to_owned(),
                sha256: sha256.clone(),
            };
            m.tables.store_extra(about, egg.data).await?;
        }
        let created = !self.root.join(project).is_dir();
        let mut undo = Undo::default();
        if let Err(e) = std::fs::create_dir_all(self.root.join(project))
            .and_then(|()| self.commit_extra(project, egg, &tmp.0, &mut undo))
        {
            undo.run();
            if created {
                let _ = std::fs::remove_dir(self.extra_dir(project));
                let _ = std::fs::remove_dir(self.root.join(project));
            }
            return Err(ApiError::internal(
                "OSError",
                format!("cannot store the egg: {e}"),
            ));
        }
        if let Some(m) = &self.shared {
            m.hashes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(self.extra_pointer(project, egg.name), sha256);
        }
        self.refresh().map_err(|e| ApiError::internal("OSError", e))
    }

    /// Deletes an extra egg (its name; the file stays for the crawls that may use it, see
    /// [`EggStore::remove_unused_extra_eggs`]); whether it existed.
    pub async fn delete_extra_egg(&self, project: &str, name: &str) -> Result<bool, ApiError> {
        let dir = self.project_dir(project)?.join(EXTRA_DIR);
        names::check(name)?;
        let _changes = self.lock_changes().await;
        let about = dir.join(format!("{name}.json"));
        if let Some(m) = &self.shared
            && !m.tables.delete_extra(project, name).await?
        {
            return Ok(false);
        }
        if !about.is_file() {
            return Ok(false);
        }
        std::fs::remove_file(&about).map_err(|e| ApiError::internal("OSError", e))?;
        Ok(true)
    }

    /// Deletes one version; the project goes when its last version does.
    pub async fn delete_version(
        &self,
        project: &str,
        version: &str,
        _changes: &Changes<'_>,
    ) -> Result<(), ApiError> {
        let dir = self.project_dir(project)?;
        names::check(version)?;
        let stored = self
            .resolve(project, Some(version))?
            .ok_or_else(|| ApiError::version_not_found(version))?;
        if let Some(m) = &self.shared
            && !m.tables.delete_version(project, &stored).await?
        {
            return Err(ApiError::version_not_found(version));
        }
        std::fs::remove_file(self.egg_path(project, &stored))
            .map_err(|e| ApiError::internal("OSError", e))?;
        let _ = std::fs::remove_file(self.spider_file(project, &stored));
        self.spiders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(project.to_owned(), stored));
        if self.versions(project)?.is_empty() {
            std::fs::remove_dir_all(&dir).map_err(|e| ApiError::internal("OSError", e))?;
        }
        self.refresh().map_err(|e| ApiError::internal("OSError", e))
    }

    /// Deletes a project's eggs.
    pub async fn delete_project(
        &self,
        project: &str,
        _changes: &Changes<'_>,
    ) -> Result<(), ApiError> {
        let dir = self.project_dir(project)?;
        if !dir.is_dir() {
            return Err(ApiError::project_not_found(project));
        }
        if let Some(m) = &self.shared {
            m.tables.delete_project(project).await?;
        }
        std::fs::remove_dir_all(&dir).map_err(|e| ApiError::internal("OSError", e))?;
        self.spiders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(p, _), _| p != project);
        self.refresh().map_err(|e| ApiError::internal("OSError", e))
    }
}

impl EggStore {
    /// On a cluster: brings this node's folder to the database's eggs when another node
    /// changed them (one cheap read when nothing changed); nothing on a single node.
    pub async fn sync(&self) -> Result<(), ApiError> {
        let Some(m) = &self.shared else {
            return Ok(());
        };
        use std::sync::atomic::Ordering;
        if m.synced.load(Ordering::Acquire) == m.tables.version().await? {
            return Ok(());
        }
        let _changes = self.lock_changes().await;
        let index = m.tables.index().await?;
        if m.synced.load(Ordering::Acquire) == index.version {
            return Ok(());
        }
        self.mirror(m, &index).await?;
        m.synced.store(index.version, Ordering::Release);
        Ok(())
    }

    /// The pointer file of an extra egg.
    fn extra_pointer(&self, project: &str, name: &str) -> PathBuf {
        self.extra_dir(project).join(format!("{name}.json"))
    }

    /// The hash of a mirrored file (`key`: the egg, or an extra egg's pointer), as recorded, or
    /// read from `file` once.
    fn mirrored_hash(&self, m: &Mirror, key: &Path, file: Option<&Path>) -> Option<String> {
        let file = file?;
        if !file.is_file() {
            return None;
        }
        if let Some(h) = m.hashes.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
            return Some(h.clone());
        }
        let h = sha256_hex(&std::fs::read(file).ok()?);
        m.hashes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), h.clone());
        Some(h)
    }

    /// Makes the folder hold exactly the eggs of `index` (the caller holds the change lock).
    async fn mirror(&self, m: &Mirror, index: &EggIndex) -> Result<(), ApiError> {
        let io = |e: std::io::Error| {
            ApiError::internal("OSError", format!("cannot mirror the cluster's eggs: {e}"))
        };
        let fetch = |sha256: String| async move {
            m.tables
                .data(&sha256)
                .await?
                .ok_or_else(|| ApiError::internal("DatabaseError", format!("egg {sha256} is gone")))
        };
        let wanted: std::collections::BTreeSet<&str> = index
            .eggs
            .iter()
            .map(|e| e.project.as_str())
            .chain(index.extras.iter().map(|x| x.project.as_str()))
            .filter(|p| names::is_safe(p))
            .collect();
        for project in self.scan_projects().map_err(io)? {
            if !wanted.contains(project.as_str()) {
                std::fs::remove_dir_all(self.root.join(&project)).map_err(io)?;
                self.forget_spiders(|p, _| p == project);
            }
        }
        for egg in &index.eggs {
            if !names::is_safe(&egg.project) || !names::is_safe(&egg.version) {
                continue;
            }
            let path = self.egg_path(&egg.project, &egg.version);
            if self.mirrored_hash(m, &path, Some(&path)).as_deref() == Some(egg.sha256.as_str()) {
                continue;
            }
            let data = fetch(egg.sha256.clone()).await?;
            std::fs::create_dir_all(self.root.join(&egg.project)).map_err(io)?;
            let tmp = self.upload(&data)?;
            self.write_spider_file(&egg.project, &egg.version, &egg.spiders)
                .map_err(io)?;
            std::fs::rename(&tmp.0, &path).map_err(io)?;
            m.hashes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(path, egg.sha256.clone());
            self.spiders
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    (egg.project.clone(), egg.version.clone()),
                    Arc::new(egg.spiders.clone()),
                );
        }
        for project in &wanted {
            for version in self.versions(project)? {
                if !index
                    .eggs
                    .iter()
                    .any(|e| e.project == *project && e.version == version)
                {
                    let path = self.egg_path(project, &version);
                    std::fs::remove_file(&path).map_err(io)?;
                    let _ = std::fs::remove_file(self.spider_file(project, &version));
                    self.forget_spiders(|p, v| p == *project && v == version);
                }
            }
        }
        for x in &index.extras {
            if !names::is_safe(&x.project) || names::check(&x.name).is_err() {
                continue;
            }
            let pointer = self.extra_pointer(&x.project, &x.name);
            let current = self
                .extra_eggs(&x.project)?
                .into_iter()
                .find(|e| e.name == x.name);
            let file = current.as_ref().map(|e| e.path.as_path());
            if self.mirrored_hash(m, &pointer, file).as_deref() == Some(x.sha256.as_str())
                && current.is_some_and(|c| c.version == x.version)
            {
                continue;
            }
            let data = fetch(x.sha256.clone()).await?;
            std::fs::create_dir_all(self.root.join(&x.project)).map_err(io)?;
            let tmp = self.upload(&data)?;
            let egg = NewExtraEgg {
                name: &x.name,
                version: &x.version,
                data: &data,
            };
            self.commit_extra(&x.project, &egg, &tmp.0, &mut Undo::default())
                .map_err(io)?;
            m.hashes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(pointer, x.sha256.clone());
        }
        for project in &wanted {
            for e in self.extra_eggs(project)? {
                if !index
                    .extras
                    .iter()
                    .any(|x| x.project == *project && x.name == e.name)
                {
                    std::fs::remove_file(self.extra_pointer(project, &e.name)).map_err(io)?;
                }
            }
        }
        self.refresh().map_err(io)
    }

    /// Forgets the cached spider lists of the (project, version) pairs `gone` selects.
    fn forget_spiders(&self, gone: impl Fn(&str, &str) -> bool) {
        self.spiders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(p, v), _| !gone(p, v));
    }
}

/// An extra egg of a project (a dependency), as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraEgg {
    pub name: String,
    pub version: String,
    pub path: PathBuf,
}

/// The longest name of an extra egg: its file, `{name}-{uuid}.egg`, is a name too.
pub const MAX_EXTRA_NAME_LEN: usize = names::MAX_NAME_LEN - 37;

/// An extra egg being uploaded.
#[derive(Debug, Clone, Copy)]
pub struct NewExtraEgg<'a> {
    /// Its distribution name (the stored file's name).
    pub name: &'a str,
    pub version: &'a str,
    pub data: &'a [u8],
}

impl NewExtraEgg<'_> {
    /// Checks the name and version, and that the egg is a sane zip.
    fn check(&self) -> Result<(), ApiError> {
        names::check(self.name)?;
        // The stored file is `{name}-{32 hex digits}.egg`: a name with it.
        if self.name.len() > MAX_EXTRA_NAME_LEN {
            return Err(ApiError::invalid(
                "name",
                format!(
                    "{} bytes (an egg name is at most {MAX_EXTRA_NAME_LEN})",
                    self.name.len()
                ),
            ));
        }
        // `__main__.egg` is the project's own egg in a bundle (`eggs/bundle.zip`).
        if self.name.starts_with('.') || self.name.ends_with(".json") || self.name == "__main__" {
            return Err(ApiError::invalid(
                "name",
                format!("{:?} is not an egg name", self.name),
            ));
        }
        if self.version.is_empty()
            || self.version.len() > names::MAX_NAME_LEN
            || self.version.chars().any(char::is_control)
        {
            return Err(ApiError::invalid(
                "version",
                format!("{:?} is not a version", self.version),
            ));
        }
        check_egg(self.data)
    }
}

/// The name and version an egg says it has (`EGG-INFO/PKG-INFO`).
pub fn egg_identity(data: &[u8]) -> Option<(String, String)> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(data)).ok()?;
    let mut text = String::new();
    archive
        .by_name("EGG-INFO/PKG-INFO")
        .ok()?
        .take(1 << 20)
        .read_to_string(&mut text)
        .ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    Some((field("Name:")?, field("Version:")?))
}

/// Proof that the caller holds the egg store's change lock.
pub struct Changes<'a>(#[allow(dead_code)] tokio::sync::RwLockWriteGuard<'a, ()>);

/// Proof that the set of projects cannot change until dropped.
pub struct ProjectsHeld<'a>(#[allow(dead_code)] tokio::sync::RwLockReadGuard<'a, ()>);

/// What a commit of extra eggs changed, to undo when a later step fails.
#[derive(Default)]
struct Undo {
    /// Files it created.
    remove: Vec<PathBuf>,
    /// Pointer files it replaced, with what they held (`None`: they did not exist).
    restore: Vec<(PathBuf, Option<Vec<u8>>)>,
}

impl Undo {
    fn run(self) {
        for (path, before) in self.restore.into_iter().rev() {
            match before {
                Some(bytes) => {
                    let _ = std::fs::write(&path, bytes);
                }
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        for path in self.remove {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A file removed when dropped (an upload that was not moved into place).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(list: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        sort_versions(&mut v);
        v
    }

    #[test]
    fn pep440_order_when_all_versions_are_valid() {
        assert_eq!(sorted(&["1.10", "1.9", "1.0"]), ["1.0", "1.9", "1.10"]);
        assert_eq!(
            sorted(&["1.0", "1.0rc1", "1.0.post1", "1.0.dev0"]),
            ["1.0.dev0", "1.0rc1", "1.0", "1.0.post1"]
        );
        assert_eq!(sorted(&["2.11", "2.01", "2.9"]), ["2.01", "2.9", "2.11"]);
        assert_eq!(
            sorted(&["1700000100", "999", "1700000000"]),
            ["999", "1700000000", "1700000100"]
        );
    }

    #[test]
    fn string_order_when_any_version_is_not_pep440() {
        assert_eq!(sorted(&["r10", "r1", "r9"]), ["r1", "r10", "r9"]);
        assert_eq!(sorted(&["123456789", "b3b8fd2"]), ["123456789", "b3b8fd2"]);
        assert_eq!(sorted(&["1_10", "1_9", "1_0"]), ["1_0", "1_10", "1_9"]);
        // Eggs stored by Scrapyd (`1_0`) beside ours (`1.1`): the new upload is the latest.
        assert_eq!(sorted(&["1.1", "1_0"]), ["1_0", "1.1"]);
    }

    #[test]
    fn sanitizes_like_scrapyd() {
        assert_eq!(scrapyd_sanitized("1.0+abc"), "1_0_abc");
        assert_eq!(scrapyd_sanitized("r23-main_x"), "r23-main_x");
    }

    /// A one-entry zip whose central directory claims `claimed` uncompressed bytes.
    fn zip_claiming(claimed: u32) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file("a", options).unwrap();
        w.write_all(b"x").unwrap();
        w.finish().unwrap();
        let mut bytes = out.into_inner();
        let central = bytes.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        bytes[central + 24..central + 28].copy_from_slice(&claimed.to_le_bytes());
        bytes
    }

    #[test]
    fn refuses_zip_bombs() {
        assert!(check_egg(&zip_claiming(1)).is_ok());
        let err = check_egg(&zip_claiming(0xF000_0000)).unwrap_err();
        assert!(
            err.message.starts_with("egg uncompresses to more than"),
            "{}",
            err.message
        );
    }

    fn new_owned<'a>(name: &'a str, data: &'a [u8]) -> NewExtraEgg<'a> {
        NewExtraEgg {
            name,
            version: "1",
            data,
        }
    }

    #[tokio::test]
    async fn extra_eggs_are_replaced_and_deleted_without_touching_the_files_crawls_use() {
        let dir = tempfile::tempdir().unwrap();
        let runner = Runner::install("python3", dir.path()).unwrap();
        let store =
            EggStore::open(&dir.path().join("eggs"), Vec::new(), runner.clone(), None).unwrap();
        let egg = zip_claiming(1);
        let new = |name: &'static str, version: &'static str| NewExtraEgg {
            name,
            version,
            data: &egg,
        };
        store.add_extra_egg("p", &new("lib", "1.0")).await.unwrap();
        assert!(
            store.is_known("p"),
            "a project with an extra egg only is known"
        );
        let first = store.extra_eggs("p").unwrap();
        assert_eq!((first.len(), first[0].version.as_str()), (1, "1.0"));
        store.add_extra_egg("p", &new("lib", "2.0")).await.unwrap();
        store.add_extra_egg("p", &new("aaa", "0.1")).await.unwrap();
        let second = store.extra_eggs("p").unwrap();
        let names: Vec<(&str, &str)> = second
            .iter()
            .map(|e| (e.name.as_str(), e.version.as_str()))
            .collect();
        assert_eq!(names, [("aaa", "0.1"), ("lib", "2.0")]);
        assert_ne!(second[1].path, first[0].path);
        assert!(
            first[0].path.is_file(),
            "the replaced egg stays for the crawls using it"
        );
        assert!(store.delete_extra_egg("p", "lib").await.unwrap());
        assert!(!store.delete_extra_egg("p", "lib").await.unwrap());
        assert_eq!(store.extra_eggs("p").unwrap().len(), 1);
        assert!(second[1].path.is_file());
        store.remove_unused_extra_eggs();
        assert!(!first[0].path.exists() && !second[1].path.exists());
        assert!(second[0].path.is_file(), "an egg in use stays");
        let long = "a".repeat(MAX_EXTRA_NAME_LEN);
        store
            .add_extra_egg("p", &new_owned(&long, &egg))
            .await
            .unwrap();
        assert!(
            store
                .extra_eggs("p")
                .unwrap()
                .iter()
                .any(|e| e.name == long)
        );
        assert!(store.delete_extra_egg("p", &long).await.unwrap());
        let longer = "a".repeat(MAX_EXTRA_NAME_LEN + 1);
        let err = store
            .add_extra_egg("p", &new_owned(&longer, &egg))
            .await
            .unwrap_err();
        assert!(err.message.contains("at most"), "{}", err.message);
        for (name, needle) in [
            ("__main__", "not an egg name"),
            ("x.json", "not an egg name"),
            ("../x", "DirectoryTraversalError"),
        ] {
            let err = store.add_extra_egg("p", &new(name, "1")).await.unwrap_err();
            assert!(err.message.contains(needle), "{name}: {}", err.message);
        }
        let err = store
            .add_extra_egg(
                "p",
                &NewExtraEgg {
                    name: "lib",
                    version: "1",
                    data: b"not a zip",
                },
            )
            .await
            .unwrap_err();
        assert!(
            err.message.starts_with("egg is not a ZIP file"),
            "{}",
            err.message
        );
        assert_eq!(store.extra_eggs("p").unwrap().len(), 1);
        runner.remove();
    }

    #[test]
    fn refuses_non_zip_eggs() {
        assert!(
            check_egg(b"not a zip")
                .unwrap_err()
                .message
                .starts_with("egg is not a ZIP file")
        );
    }
}
