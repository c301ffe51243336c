//! An in-process scrapyd-rs for tests: `serve` on 127.0.0.1 port 0 with every folder in a
//! temporary directory, the test venv's Python, and a small HTTP client speaking Scrapyd's API.

use scrapyd_rs::config::{Config, DatabaseUrl, DbsDir, ItemsDir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The storage a test daemon runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite files under the daemon's `dbs_dir` (the default).
    Sqlite,
    /// A fresh database of the test PostgreSQL server.
    Postgres,
}

impl Backend {
    /// A store of this backend: for PostgreSQL, a new database (restarts of one daemon, and
    /// the nodes of one cluster, apply the same store).
    pub fn store(self) -> Store {
        Store(match self {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let url = super::postgres::database();
                Some(DatabaseUrl::parse(&url).expect("a PostgreSQL URL"))
            }
        })
    }
}

/// Where a test daemon keeps its state (see [`Backend::store`]).
#[derive(Debug, Clone)]
pub struct Store(Option<DatabaseUrl>);

impl Store {
    /// Points `config` at this store.
    pub fn apply(&self, config: &mut Config) {
        config.database_url = self.0.clone();
    }
}

/// Makes a test of each backend from `async fn name(backend: Backend)`: `sqlite::name` and
/// `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::support::server::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::support::server::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// A running daemon.
pub struct TestServer {
    pub url: String,
    pub config: Config,
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), scrapyd_rs::StartError>>>,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
}

/// A configuration with every folder under `root`, the test venv's Python, max_proc 2.
pub fn test_config(root: &Path) -> Config {
    let mut c = Config::defaults(root);
    c.eggs_dir = root.join("eggs");
    c.logs_dir = Some(root.join("logs"));
    c.items_dir = ItemsDir::Local(root.join("items"));
    c.dbs_dir = DbsDir::Dir(root.join("dbs"));
    c.jobdata_dir = root.join("jobdata");
    c.python = super::venv().python.display().to_string();
    c.max_proc = 2;
    c.node_name = "test-node".into();
    // A day, longer than any test waits: a job that starts in a test started on an event (a
    // schedule, an exit, an upload), never on the poll.
    c.poll_interval = Duration::from_secs(86_400);
    c
}

impl TestServer {
    /// Starts a daemon in a fresh temporary folder; `edit` adjusts the configuration.
    pub async fn start(edit: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let mut server = Self::start_in(&root, edit).await;
        server.dir = Some(dir);
        server
    }

    /// Starts a daemon whose folders are under `root` (which the caller keeps).
    pub async fn start_in(root: &Path, edit: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = test_config(root);
        edit(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(scrapyd_rs::serve(config.clone(), listener, async move {
            let _ = rx.await;
        }));
        let server = TestServer {
            url,
            config,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
            dir: None,
            root: root.to_path_buf(),
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let client = self.client.clone();
        let url = format!("{}/daemonstatus.json", self.url);
        let user = self.config.username.clone();
        let pass = self.config.password.clone();
        super::wait_until_async("server ready", Duration::from_secs(20), || {
            let (client, url, user, pass) =
                (client.clone(), url.clone(), user.clone(), pass.clone());
            async move {
                let mut req = client.get(&url);
                if !user.is_empty() {
                    req = req.basic_auth(user, Some(pass));
                }
                req.send().await.ok().map(|_| ())
            }
        })
        .await;
    }

    /// The temporary root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stops the daemon (as SIGTERM would) and waits for it to finish.
    pub async fn stop(mut self) {
        self.stop_inner().await;
    }

    async fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }

    /// Stops the daemon and gives back its folder (for a restart in the same place).
    pub async fn stop_keep(mut self) -> Option<tempfile::TempDir> {
        self.stop_inner().await;
        self.dir.take()
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if self.config.username.is_empty() {
            req
        } else {
            req.basic_auth(&self.config.username, Some(&self.config.password))
        }
    }

    /// GET `path` with a query; the raw response.
    pub async fn get_raw(&self, path: &str, query: &[(&str, &str)]) -> reqwest::Response {
        self.auth(self.client.get(format!("{}/{path}", self.url)).query(query))
            .send()
            .await
            .expect("GET")
    }

    /// GET a webservice and parse its JSON.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let r = self.get_raw(path, query).await;
        assert_eq!(r.status(), 200, "GET {path}");
        let body = r.bytes().await.expect("body");
        assert!(body.ends_with(b"\n"), "body ends with a newline");
        serde_json::from_slice(&body).expect("JSON")
    }

    /// POST a urlencoded form to a webservice and parse its JSON.
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let r = self
            .auth(self.client.post(format!("{}/{path}", self.url)).form(form))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 200, "POST {path}");
        let body = r.bytes().await.expect("body");
        assert!(body.ends_with(b"\n"), "body ends with a newline");
        serde_json::from_slice(&body).expect("JSON")
    }

    /// Uploads an egg as a multipart file, like scrapyd-deploy and curl -F.
    pub async fn add_version(&self, project: &str, version: &str, egg: &[u8]) -> Value {
        let form = reqwest::multipart::Form::new()
            .text("project", project.to_owned())
            .text("version", version.to_owned())
            .part(
                "egg",
                reqwest::multipart::Part::bytes(egg.to_vec()).file_name("project.egg"),
            );
        let r = self
            .auth(
                self.client
                    .post(format!("{}/addversion.json", self.url))
                    .multipart(form),
            )
            .send()
            .await
            .expect("POST addversion");
        r.json().await.expect("JSON")
    }

    /// Schedules a job and returns its id (panics on an error answer).
    pub async fn schedule(&self, form: &[(&str, &str)]) -> String {
        let v = self.post("schedule.json", form).await;
        assert_eq!(v["status"], "ok", "schedule {form:?}: {v}");
        v["jobid"].as_str().expect("jobid").to_owned()
    }

    /// The `currstate` of a job.
    pub async fn state(&self, job: &str) -> Value {
        self.get("status.json", &[("job", job)]).await["currstate"].clone()
    }

    /// Waits until the job reaches `state`.
    pub async fn wait_state(&self, job: &str, state: &str, timeout: Duration) {
        super::wait_until_async(&format!("job {job} {state}"), timeout, || async move {
            (self.state(job).await == state).then_some(())
        })
        .await;
    }

    /// The finished entry of a job in listjobs.
    pub async fn finished_entry(&self, job: &str) -> Option<Value> {
        let v = self.get("listjobs.json", &[]).await;
        v["finished"]
            .as_array()?
            .iter()
            .find(|e| e["id"] == job)
            .cloned()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
