//! `esigd backup DIR` and `esigd restore DIR`, and the high-water marks kept in the HSM.
//!
//! # Backup (online)
//!
//! The running daemon holds the RocksDB lock, so the daemon makes the backup itself: `esigd backup DIR`
//! asks it over the admin socket (`POST /admin/backup {"dir": "/absolute/DIR"}`, [`admin_router`]). The
//! daemon, as the service user, writes into DIR (which must not exist, or be empty):
//!
//! * `db/`: a consistent RocksDB checkpoint of the store, taken while signing continues
//!   ([`esigd_store::Store::checkpoint`]: memtables flushed first, so every signature and time-stamp
//!   acknowledged before the request is in it; SST files are hard links when DIR is on the data
//!   directory's file system: copy the backup elsewhere to survive a disk loss);
//! * `pki/`: the published certificates (`ca.pem`, `chain.pem`, `tsa.pem`, `ocsp.pem`, those present);
//! * `manifest.json` ([`Manifest`], written last, so a backup without it is incomplete): format version,
//!   time, esigd version, keys per column family, the marks (TSA serial reservation mark, last CRL
//!   number, ledger size) read from the checkpoint, and the size and SHA-256 of every file.
//!
//! Not in the backup: the configuration file, the TLS files and the Identity BB credentials it names
//! (secrets kept with the configuration), and the HSM's keys (the HSM has its own backup procedure).
//!
//! # Never backwards: the marks in the HSM
//!
//! Time-stamp serials and CRL numbers are published; after a restore they must continue above
//! everything issued before, also what was issued after the backup was taken. The facts cannot come from
//! the backup or the data directory (a restore after a disk loss goes into an empty one): they come from
//! the HSM, which survives. The daemon keeps a token data object labelled [`MARKS_LABEL`] ([`HsmMarks`],
//! [`TokenMarks`]): the store's marks as last recorded, and `tsa_serial_reserved`, above every serial that
//! may have been handed out. Each time the CA numbers a CRL, the marks are written before the CRL is
//! signed. Each time the TSA durably reserves a block of serials (every 4096 time-stamps, and at start),
//! the token must already cover the new block: it is written one block ahead by a background thread, so
//! the stamping threads do not wait for the token (a SoftHSM write takes tens of milliseconds); only when
//! the token does not cover it yet (the first block after a start, or the background write failed) does
//! the reservation wait, and a failed write then fails the reservation. These are rare events, never one
//! per signature. At start the daemon compares its store with the token and lifts the store's TSA mark and
//! CRL number when they are behind (a store copied back by hand), and lifts the token's marks to the
//! store's.
//!
//! # Restore (offline)
//!
//! `esigd restore DIR [--force]` into the configured `data_dir`:
//!
//! 1. checks the backup: manifest format, the size and SHA-256 of every file, no unlisted file in `db/`,
//!    the checkpoint's own marks equal to the manifest's;
//! 2. refuses a live data directory (the admin socket answers, or a process holds the RocksDB `LOCK`;
//!    also with `--force`), and, unless `--force`, a data directory that already has a store or
//!    different certificates;
//! 3. reads the HSM's marks; a backup *older* than them (any mark below) is refused, naming the marks,
//!    unless `--force` (a warning: what was signed after the backup is lost);
//! 4. copies the store into place and **always** lifts its TSA mark to `tsa_serial_reserved` and its CRL
//!    number to the HSM's (for the newest backup this skips at most the serials of the block reserved
//!    ahead: gaps are harmless, repeats are not): new serials and CRL numbers continue above everything
//!    ever issued. A replaced store or certificate is kept as `*.replaced-<unix time>`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use esigd_hsm::Hsm;
use esigd_store::Store;
use esigd_store::backup::{MarkSink, Marks, StoreFacts};
use esigd_web::error::ApiError;
use esigd_web::routes::admin::AdminPeer;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;

use crate::ceremony::PkiFiles;
use crate::config::Config;

/// Label of the token data object holding the high-water marks.
pub const MARKS_LABEL: &str = "esigd-marks";
/// Name of the manifest file in a backup directory.
pub const MANIFEST: &str = "manifest.json";
/// `format` of the manifest.
pub const FORMAT: &str = "esigd-backup";
/// `format_version` this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Version of the marks record in the HSM.
const MARKS_VERSION: u32 = 1;

// ---------------------------------------------------------------------------------------------------
// The marks in the HSM.

/// What the token records: the store's [`Marks`] as last recorded, and how far time-stamp serials are
/// covered (`tsa_serial_reserved` ≥ every serial that may have been handed out).
///
/// The TSA's record is written one block ahead, off the stamping threads: when the TSA reserves block
/// `[m, m + block)` the store's mark becomes `m + block`; if the token already covers it (written ahead at
/// the previous reservation) the reservation goes on at once and a background thread records the new mark
/// and covers the *next* block; otherwise (the first reservation after a start, or the background write
/// failed) the reservation waits for the token write. A crash can thus leave `tsa_serial_mark` one block
/// behind the store, never `tsa_serial_reserved`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenMarks {
    /// The store's marks as last recorded.
    #[serde(flatten)]
    pub marks: Marks,
    /// Every time-stamp serial ever handed out is below this.
    pub tsa_serial_reserved: u64,
}

impl TokenMarks {
    /// The marks a restored (or behind) store must be lifted to: serials from `tsa_serial_reserved` on,
    /// CRL numbers above `crl_number`.
    pub fn floor(&self) -> Marks {
        Marks {
            tsa_serial_mark: self.marks.tsa_serial_mark.max(self.tsa_serial_reserved),
            crl_number: self.marks.crl_number,
            ledger_size: self.marks.ledger_size,
        }
    }

    fn max(self, other: TokenMarks) -> TokenMarks {
        TokenMarks {
            marks: self.marks.max(other.marks),
            tsa_serial_reserved: self.tsa_serial_reserved.max(other.tsa_serial_reserved),
        }
    }
}

/// The marks record on the token (JSON, so `pkcs11-tool --read-object` shows it readably).
#[derive(Serialize, Deserialize)]
struct MarksRecord {
    version: u32,
    #[serde(flatten)]
    marks: TokenMarks,
}

/// Serialises every read-modify-write of the marks object in this process (the TSA, its background
/// writer and the CA hold separate handles).
static MARKS_LOCK: Mutex<()> = Mutex::new(());

/// The high-water marks kept in the HSM (token data object [`MARKS_LABEL`]). Its sinks:
/// [`HsmMarks::crl_sink`] (synchronous) and [`HsmMarks::tsa_sink`] (one block ahead, in the background).
#[derive(Clone)]
pub struct HsmMarks {
    hsm: Hsm,
}

impl std::fmt::Debug for HsmMarks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmMarks").finish_non_exhaustive()
    }
}

impl HsmMarks {
    /// The marks object of `hsm`'s token (no I/O).
    pub fn new(hsm: Hsm) -> Self {
        Self { hsm }
    }

    /// The marks on the token; `None` when there is no marks object (never written).
    /// Blocking (PKCS#11).
    pub fn read(&self) -> Result<Option<TokenMarks>> {
        match self
            .hsm
            .read_data(MARKS_LABEL)
            .with_context(|| format!("hsm: reading the data object {MARKS_LABEL:?}"))?
        {
            Some(v) => decode_marks(&v).map(Some),
            None => Ok(None),
        }
    }

    /// Lifts the marks on the token to at least `marks` (each field the larger one); writes only when
    /// something grows. Returns the marks on the token afterwards. Blocking (PKCS#11).
    pub fn raise(&self, marks: &TokenMarks) -> Result<TokenMarks> {
        let _guard = MARKS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut failed = None;
        let mut after = *marks;
        self.hsm
            .update_data(MARKS_LABEL, |current| {
                let old = match current.map(decode_marks).transpose() {
                    Ok(old) => old,
                    Err(e) => {
                        failed = Some(e);
                        return None;
                    }
                };
                let new = old.unwrap_or_default().max(*marks);
                after = new;
                if old == Some(new) {
                    return None;
                }
                match serde_json::to_vec(&MarksRecord {
                    version: MARKS_VERSION,
                    marks: new,
                }) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        failed = Some(e.into());
                        None
                    }
                }
            })
            .with_context(|| format!("hsm: writing the data object {MARKS_LABEL:?}"))?;
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(after)
    }

    /// Records the store's marks and logs it (with the time the token took).
    fn record(&self, marks: &TokenMarks, how: &'static str) -> Result<TokenMarks> {
        let t0 = std::time::Instant::now();
        let after = self.raise(marks)?;
        tracing::info!(
            tsa_serial_mark = after.marks.tsa_serial_mark,
            tsa_serial_reserved = after.tsa_serial_reserved,
            crl_number = after.marks.crl_number,
            ledger_size = after.marks.ledger_size,
            micros = t0.elapsed().as_micros() as u64,
            how,
            "high-water marks recorded in the HSM"
        );
        Ok(after)
    }

    /// The sink of the CA's CRL numbers: each is on the token before the CRL is signed (CRLs are rare).
    pub fn crl_sink(&self) -> Arc<dyn MarkSink> {
        Arc::new(CrlSink(self.clone()))
    }

    /// The sink of the TSA's block reservations (`block` serials each): see [`TokenMarks`]. `covered` is
    /// what the token is known to cover now (from [`reconcile_marks`]).
    pub fn tsa_sink(&self, block: u64, covered: u64) -> Result<Arc<dyn MarkSink>> {
        let shared = Arc::new(TsaShared {
            marks: self.clone(),
            block,
            covered: std::sync::atomic::AtomicU64::new(covered),
        });
        let (tx, rx) = std::sync::mpsc::channel::<Marks>();
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("esigd-hsm-marks".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    // Whatever queued up meanwhile: one write for all.
                    let latest = rx.try_iter().fold(first, Marks::max);
                    if let Err(e) = worker.write_ahead(&latest, "ahead, in the background") {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "recording the high-water marks in the HSM failed; the next serial block waits for it"
                        );
                    }
                }
            })
            .context("cannot start the HSM marks thread")?;
        Ok(Arc::new(TsaSink {
            shared,
            tx: Mutex::new(tx),
        }))
    }
}

struct CrlSink(HsmMarks);

impl MarkSink for CrlSink {
    fn record(&self, marks: &Marks) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0
            .record(
                &TokenMarks {
                    marks: *marks,
                    tsa_serial_reserved: marks.tsa_serial_mark,
                },
                "CRL number",
            )
            .map_err(|e| format!("{e:#}"))?;
        Ok(())
    }
}

struct TsaShared {
    marks: HsmMarks,
    block: u64,
    /// `tsa_serial_reserved` as last written (or read) by this process.
    covered: std::sync::atomic::AtomicU64,
}

impl TsaShared {
    /// Records `marks` and covers one more block beyond its TSA mark.
    fn write_ahead(&self, marks: &Marks, how: &'static str) -> Result<()> {
        let after = self.marks.record(
            &TokenMarks {
                marks: *marks,
                tsa_serial_reserved: marks.tsa_serial_mark.saturating_add(self.block),
            },
            how,
        )?;
        self.covered.fetch_max(
            after.tsa_serial_reserved,
            std::sync::atomic::Ordering::SeqCst,
        );
        Ok(())
    }
}

struct TsaSink {
    shared: Arc<TsaShared>,
    tx: Mutex<std::sync::mpsc::Sender<Marks>>,
}

impl MarkSink for TsaSink {
    fn record(&self, marks: &Marks) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let covered = self
            .shared
            .covered
            .load(std::sync::atomic::Ordering::SeqCst);
        if marks.tsa_serial_mark <= covered {
            // Covered since the previous reservation: record in the background, off the stamping path.
            let queued = self
                .tx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send(*marks);
            if queued.is_ok() {
                return Ok(());
            }
        }
        self.shared
            .write_ahead(marks, "before the block is used")
            .map_err(|e| format!("{e:#}"))?;
        Ok(())
    }
}

fn decode_marks(v: &[u8]) -> Result<TokenMarks> {
    let r: MarksRecord = serde_json::from_slice(v).with_context(|| {
        format!("hsm: the data object {MARKS_LABEL:?} is not an esigd marks record")
    })?;
    if r.version != MARKS_VERSION {
        bail!(
            "hsm: the data object {MARKS_LABEL:?} has version {}, this esigd reads {MARKS_VERSION}",
            r.version
        );
    }
    Ok(r.marks)
}

/// At start, before the TSA and the CA use the store: when the store is behind the marks recorded in the
/// HSM (a store copied back by hand, not with `esigd restore`), lifts its TSA mark and CRL number above
/// them (logged as a warning); then lifts the HSM's marks to the store's (the first start with marks, or a
/// new token). Returns how far the token covers time-stamp serials (for [`HsmMarks::tsa_sink`]). Blocking.
pub fn reconcile_marks(store: &Store, marks: &HsmMarks) -> Result<u64> {
    let on_token = marks.read()?;
    let before = store
        .marks()
        .context("store: reading the high-water marks")?;
    if let Some(token) = on_token {
        let behind: Vec<_> = before
            .behind(&token.marks)
            .into_iter()
            .filter(|(name, _, _)| *name != "ledger_size")
            .collect();
        if !behind.is_empty() {
            tracing::warn!(
                store = %before,
                hsm = %token.marks,
                "the store is behind the high-water marks recorded in the HSM (restored from an older copy \
                 without `esigd restore`?): raising the TSA serial mark and CRL number above them; what was \
                 signed after that copy is not in this store"
            );
            store
                .raise_marks_blocking(&token.floor())
                .context("store: raising the high-water marks to the HSM's")?;
        }
    }
    let now = store
        .marks()
        .context("store: reading the high-water marks")?;
    let after = marks.raise(&TokenMarks {
        marks: now,
        tsa_serial_reserved: now.tsa_serial_mark,
    })?;
    Ok(after.tsa_serial_reserved)
}

// ---------------------------------------------------------------------------------------------------
// The manifest.

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the backup directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// `manifest.json` of a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// When the checkpoint was taken (RFC 3339, UTC).
    pub created: String,
    /// The same, seconds since the Unix epoch.
    pub created_unix: u64,
    /// Version of the esigd that wrote it.
    pub esigd_version: String,
    /// The store's schema version.
    pub schema_version: u32,
    /// Keys per column family in the checkpoint.
    pub column_families: std::collections::BTreeMap<String, u64>,
    /// TSA serial reservation mark, last CRL number, ledger size, read from the checkpoint.
    pub marks: Marks,
    /// Every file of the backup but the manifest, sorted by path.
    pub files: Vec<FileEntry>,
}

fn sha256_file(path: &Path) -> Result<(u64, String)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, hex::encode(h.finalize())))
}

/// Relative paths of the regular files under `root/sub`, sorted (`/`-separated).
fn list_files(root: &Path, sub: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![sub.to_owned()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        if !dir.exists() {
            continue;
        }
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name();
            let name = name
                .to_str()
                .with_context(|| format!("{}: a file name that is not UTF-8", dir.display()))?;
            let child = format!("{rel}/{name}");
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(child);
            } else if kind.is_file() {
                out.push(child);
            } else {
                bail!(
                    "{}: neither a file nor a directory",
                    root.join(&child).display()
                );
            }
        }
    }
    out.sort();
    Ok(out)
}

fn fsync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync {}", dir.display()))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn copy_synced(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("fsync {}", to.display()))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------------
// Backup, in the daemon.

/// Makes a backup of the running daemon's `store` and PKI files into `dir` (absolute; must not exist, or
/// be an empty directory). Blocking: call it from a blocking thread.
pub fn create_backup(cfg: &Config, store: &Store, dir: &Path) -> Result<Manifest> {
    if !dir.is_absolute() {
        bail!("dir: {} is not an absolute path", dir.display());
    }
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("dir: {} exists and cannot be listed", dir.display()))?
            .next()
            .is_none();
        if !empty {
            bail!(
                "dir: {} exists and is not empty; give a new directory",
                dir.display()
            );
        }
    } else {
        std::fs::create_dir(dir).with_context(|| format!("dir: creating {}", dir.display()))?;
    }
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("dir: chmod 0700 {}", dir.display()))?;
    let created = SystemTime::now();
    let facts: StoreFacts = store
        .checkpoint(&dir.join("db"))
        .context("store checkpoint")?;
    let pki = dir.join("pki");
    std::fs::create_dir(&pki).with_context(|| format!("creating {}", pki.display()))?;
    let files = PkiFiles::of(cfg);
    for src in [&files.ca, &files.chain, &files.tsa, &files.ocsp] {
        if src.is_file()
            && let Some(name) = src.file_name()
        {
            copy_synced(src, &pki.join(name))?;
        }
    }
    let mut entries = Vec::new();
    for rel in list_files(dir, "db")?
        .into_iter()
        .chain(list_files(dir, "pki")?)
    {
        let (size, sha256) = sha256_file(&dir.join(&rel))?;
        entries.push(FileEntry {
            path: rel,
            size,
            sha256,
        });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        created: humantime::format_rfc3339_seconds(created).to_string(),
        created_unix: created
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        esigd_version: env!("CARGO_PKG_VERSION").into(),
        schema_version: facts.schema_version,
        column_families: facts.column_families,
        marks: facts.marks,
        files: entries,
    };
    fsync_dir(&pki)?;
    fsync_dir(&dir.join("db"))?;
    // Last, atomically: a backup directory without a manifest is incomplete.
    let tmp = dir.join(".manifest.json.tmp");
    write_synced(&tmp, &serde_json::to_vec_pretty(&manifest)?)?;
    std::fs::rename(&tmp, dir.join(MANIFEST))
        .with_context(|| format!("writing {}", dir.join(MANIFEST).display()))?;
    fsync_dir(dir)?;
    Ok(manifest)
}

#[derive(Clone)]
struct BackupState {
    cfg: Arc<Config>,
    store: Store,
    /// One backup at a time.
    running: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupRequest {
    dir: PathBuf,
}

/// The admin socket's backup route: `POST /admin/backup {"dir": "/absolute/path"}` → the manifest
/// without its file list, plus `files` (the count) and `dir`. Merge it into the admin router and serve
/// with `ConnectInfo<AdminPeer>` ([`serve_admin`]).
pub fn admin_router(cfg: Arc<Config>, store: Store) -> Router {
    Router::new()
        .route(
            "/admin/backup",
            post(backup_route).layer(DefaultBodyLimit::max(16 * 1024)),
        )
        .with_state(BackupState {
            cfg,
            store,
            running: Arc::new(tokio::sync::Mutex::new(())),
        })
}

async fn backup_route(
    State(st): State<BackupState>,
    ConnectInfo(peer): ConnectInfo<AdminPeer>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let req: BackupRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("request body: {e}")))?;
    if !req.dir.is_absolute() {
        return Err(ApiError::bad(format!(
            "dir: {} is not an absolute path",
            req.dir.display()
        )));
    }
    let Ok(_one) = st.running.try_lock() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "a backup is running already; try again when it has finished",
        ));
    };
    tracing::info!(dir = %req.dir.display(), uid = ?peer.uid, pid = ?peer.pid, "backup started");
    let t0 = std::time::Instant::now();
    let dir = req.dir.clone();
    let made = tokio::task::spawn_blocking(move || create_backup(&st.cfg, &st.store, &dir))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "backup task failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "backup: internal error")
        })?;
    match made {
        Ok(m) => {
            tracing::info!(
                dir = %req.dir.display(),
                files = m.files.len(),
                marks = %m.marks,
                millis = t0.elapsed().as_millis() as u64,
                "backup written"
            );
            let mut v = serde_json::to_value(&m).map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("backup: {e}"))
            })?;
            v["files"] = json!(m.files.len());
            v["dir"] = json!(req.dir);
            Ok(axum::Json(v))
        }
        Err(e) => {
            tracing::error!(dir = %req.dir.display(), error = format!("{e:#}"), "backup failed");
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("backup: {e:#}"),
            ))
        }
    }
}

/// Serves the admin API (`esigd_web::routes::admin::router`) plus [`admin_router`] on `listener` until
/// `shutdown` resolves.
pub async fn serve_admin(
    listener: tokio::net::UnixListener,
    state: Arc<esigd_web::WebState>,
    cfg: Arc<Config>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let store = state.svc.store.clone();
    let app = esigd_web::routes::admin::router(state).merge(admin_router(cfg, store));
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<AdminPeer>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// `esigd backup DIR`: asks the running daemon for a backup into `dir` and prints what it wrote.
pub fn run_backup(cfg: &Config, dir: &Path) -> Result<()> {
    let dir = std::path::absolute(dir).with_context(|| format!("DIR: {}", dir.display()))?;
    let socket = esigd_web::routes::admin::socket_path(&cfg.data_dir);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, answer) = runtime.block_on(crate::admin::call(
        &socket,
        hyper::Method::POST,
        "/admin/backup",
        Some(json!({ "dir": dir })),
    ))?;
    if !status.is_success() {
        let message = answer["status"]["message"]
            .as_str()
            .unwrap_or("no message")
            .to_owned();
        bail!("{status}: {message}");
    }
    println!("{}", serde_json::to_string_pretty(&answer)?);
    println!("backup written to {}", dir.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Restore, offline.

/// Reads and checks a backup: manifest format, every file's size and SHA-256, no unlisted store file,
/// the checkpoint's own facts equal to the manifest's. Returns the manifest.
pub fn verify_backup(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "{}: cannot read it (an incomplete backup has no manifest)",
            path.display()
        )
    })?;
    let m: Manifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not an esigd backup manifest", path.display()))?;
    if m.format != FORMAT || m.format_version != FORMAT_VERSION {
        bail!(
            "{}: format {:?} version {}; this esigd reads {FORMAT:?} version {FORMAT_VERSION}",
            path.display(),
            m.format,
            m.format_version
        );
    }
    for f in &m.files {
        let rel = Path::new(&f.path);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
            || !(f.path.starts_with("db/") || f.path.starts_with("pki/"))
        {
            bail!(
                "{}: file {:?} is outside db/ and pki/",
                path.display(),
                f.path
            );
        }
        let (size, sha) = sha256_file(&dir.join(rel))
            .with_context(|| format!("backup file {} (listed in the manifest)", f.path))?;
        if size != f.size || sha != f.sha256 {
            bail!(
                "backup file {} is damaged: {size} bytes, SHA-256 {sha}; the manifest says {} bytes, {}",
                f.path,
                f.size,
                f.sha256
            );
        }
    }
    let listed: std::collections::BTreeSet<&str> =
        m.files.iter().map(|f| f.path.as_str()).collect();
    for rel in list_files(dir, "db")?
        .iter()
        .chain(&list_files(dir, "pki")?)
    {
        if !listed.contains(rel.as_str()) {
            bail!("backup file {rel} is not in the manifest");
        }
    }
    let facts = esigd_store::backup::inspect(&dir.join("db"))?;
    if facts.marks != m.marks || facts.column_families != m.column_families {
        bail!(
            "{}: the manifest does not describe this store (the store has {}, the manifest {})",
            path.display(),
            facts.marks,
            m.marks
        );
    }
    Ok(m)
}

/// Why a data directory is live, if it is: the admin socket answers, or a process holds the store's
/// RocksDB lock.
pub fn live_reason(cfg: &Config) -> Option<String> {
    let socket = esigd_web::routes::admin::socket_path(&cfg.data_dir);
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return Some(format!(
            "the admin socket {} answers: esigd is running on this data directory",
            socket.display()
        ));
    }
    let lock = cfg.store_dir().join("LOCK");
    match lock_holder(&lock) {
        Ok(Some(pid)) => Some(format!(
            "process {pid} holds the store's lock {}: esigd is running on this data directory",
            lock.display()
        )),
        Ok(None) => None,
        Err(e) => Some(format!(
            "cannot check the store's lock {}: {e}",
            lock.display()
        )),
    }
}

/// The process holding a POSIX lock on `lock` (RocksDB's `LOCK` file), if any.
fn lock_holder(lock: &Path) -> std::io::Result<Option<i32>> {
    let f = match std::fs::File::open(lock) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut fl = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GETLK(&mut fl)).map_err(std::io::Error::from)?;
    Ok((fl.l_type != libc::F_UNLCK as libc::c_short).then_some(fl.l_pid))
}

/// Gives `path` and everything under it to `owner` (uid, gid).
fn chown_tree(path: &Path, owner: (u32, u32)) -> Result<()> {
    std::os::unix::fs::chown(path, Some(owner.0), Some(owner.1))
        .with_context(|| format!("chown {}", path.display()))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in
            std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))?
        {
            chown_tree(&entry?.path(), owner)?;
        }
    }
    Ok(())
}

/// What [`restore`] did.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The marks of the backup.
    pub backup: Marks,
    /// The marks the HSM had recorded (`None`: no marks object on the token).
    pub hsm: Option<TokenMarks>,
    /// The marks of the restored store (the backup's, lifted to the HSM's).
    pub store: Marks,
    /// Where a replaced store was moved (with `--force`).
    pub replaced: Option<PathBuf>,
}

/// `esigd restore DIR [--force]`: restores the backup in `dir` into the configured `data_dir` (see the
/// module docs). `open_hsm` opens the configured HSM (called after the checks of the directories).
pub fn restore(
    cfg: &Config,
    dir: &Path,
    force: bool,
    open_hsm: impl FnOnce() -> Result<Hsm>,
) -> Result<Restored> {
    let manifest = verify_backup(dir)?;
    if let Some(why) = live_reason(cfg) {
        bail!(
            "restore refused: {why}. Stop it first (systemctl stop esigd); --force does not override this"
        );
    }
    let store_dir = cfg.store_dir();
    let existing_store = esigd_store::backup::is_store(&store_dir);
    if existing_store && !force {
        bail!(
            "restore refused: {} already holds a store; restoring would replace it. Restore into an empty \
             data_dir, or give --force (the current store is kept as db.replaced-<time>)",
            store_dir.display()
        );
    }
    let pki_backup = dir.join("pki");
    let pki_dir = cfg.pki_dir();
    let mut pki_changes = Vec::new();
    for rel in list_files(dir, "pki")? {
        let name = rel.trim_start_matches("pki/");
        let target = pki_dir.join(name);
        let src = pki_backup.join(name);
        let same = match (std::fs::read(&target), std::fs::read(&src)) {
            (Ok(a), Ok(b)) => a == b,
            (Err(e), _) if e.kind() == std::io::ErrorKind::NotFound => false,
            (Err(e), _) => return Err(e).with_context(|| format!("reading {}", target.display())),
            (_, Err(e)) => return Err(e).with_context(|| format!("reading {}", src.display())),
        };
        if !same {
            if target.exists() && !force {
                bail!(
                    "restore refused: {} differs from the backup's {rel}; give --force to replace it (kept as \
                     {name}.replaced-<time>)",
                    target.display()
                );
            }
            pki_changes.push((src, target));
        }
    }

    let hsm = open_hsm().context("opening the HSM to read the high-water marks")?;
    let marks = HsmMarks::new(hsm.clone());
    let on_token = marks.read()?;
    let backup = manifest.marks;
    match on_token {
        None => eprintln!(
            "warning: the HSM has no {MARKS_LABEL:?} object: nothing tells whether this backup is the newest \
             state (a token never used by an esigd that records marks?). Restoring with the backup's marks."
        ),
        Some(token) => {
            let behind = backup.behind(&token.marks);
            if !behind.is_empty() {
                let list = behind
                    .iter()
                    .map(|(name, b, h)| {
                        format!("{name} {b} in the backup < {h} recorded in the HSM")
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                if !force {
                    bail!(
                        "restore refused: the backup of {} is older than what was already published ({list}). \
                         What was signed after it would be lost. Restore a newer backup, or give --force to \
                         restore this one anyway: time-stamp serials and CRL numbers then continue above the \
                         HSM's marks",
                        manifest.created
                    );
                }
                eprintln!(
                    "WARNING: --force: restoring a backup of {} that is older than what was already published \
                     ({list}). Signatures, time-stamps and certificate changes made after it are NOT in the \
                     restored store. Time-stamp serials and CRL numbers will continue above the HSM's marks.",
                    manifest.created
                );
            }
        }
    }

    // Copy into a staging directory next to the store, lift the marks there, then swap it in.
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let stamp = unix_now();
    let staging = cfg
        .data_dir
        .join(format!(".restore-{}-{stamp}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("removing {}", staging.display()))?;
    }
    std::fs::create_dir(&staging).with_context(|| format!("creating {}", staging.display()))?;
    std::fs::set_permissions(
        &staging,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    for rel in list_files(dir, "db")? {
        let name = rel.trim_start_matches("db/");
        if name.contains('/') {
            bail!("backup file {rel}: the store has no subdirectories");
        }
        copy_synced(&dir.join(&rel), &staging.join(name))?;
    }
    fsync_dir(&staging)?;
    let floor = on_token.map(|t| t.floor()).unwrap_or_default();
    let restored_marks = {
        let store = Store::open(&staging, esigd_store::StoreOptions::default())
            .with_context(|| format!("opening the copied store in {}", staging.display()))?;
        store
            .raise_marks_blocking(&floor)
            .context("raising the restored store's marks to the HSM's")?;
        store.marks()?
    };
    // The store handle is dropped: its lock is released before the rename.
    let replaced = if store_dir.exists() {
        let aside = cfg.data_dir.join(format!("db.replaced-{stamp}"));
        std::fs::rename(&store_dir, &aside)
            .with_context(|| format!("moving {} to {}", store_dir.display(), aside.display()))?;
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&staging, &store_dir)
        .with_context(|| format!("moving {} to {}", staging.display(), store_dir.display()))?;
    if !pki_changes.is_empty() {
        std::fs::create_dir_all(&pki_dir)
            .with_context(|| format!("creating {}", pki_dir.display()))?;
        for (src, target) in &pki_changes {
            if target.exists() {
                let name = target
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let aside = pki_dir.join(format!("{name}.replaced-{stamp}"));
                std::fs::rename(target, &aside).with_context(|| {
                    format!("moving {} to {}", target.display(), aside.display())
                })?;
            }
            copy_synced(src, target)?;
        }
        fsync_dir(&pki_dir)?;
    }
    // Run as root, the copies belong to root: give them the data directory's owner (the service user),
    // who must open them.
    if nix::unistd::geteuid().is_root() {
        let meta = std::fs::metadata(&cfg.data_dir)
            .with_context(|| format!("reading the owner of {}", cfg.data_dir.display()))?;
        let owner = (
            std::os::unix::fs::MetadataExt::uid(&meta),
            std::os::unix::fs::MetadataExt::gid(&meta),
        );
        chown_tree(&store_dir, owner)?;
        if !pki_changes.is_empty() {
            chown_tree(&pki_dir, owner)?;
        }
    }
    fsync_dir(&cfg.data_dir)?;
    // The HSM's marks cover the restored store too (they only grow).
    marks.raise(&TokenMarks {
        marks: restored_marks,
        tsa_serial_reserved: restored_marks.tsa_serial_mark,
    })?;
    Ok(Restored {
        backup,
        hsm: on_token,
        store: restored_marks,
        replaced,
    })
}

/// `esigd restore DIR [--force]` with its messages.
pub fn run_restore(
    cfg: &Config,
    dir: &Path,
    force: bool,
    open_hsm: impl FnOnce() -> Result<Hsm>,
) -> Result<()> {
    let r = restore(cfg, dir, force, open_hsm)?;
    println!(
        "restored {} into {}",
        dir.display(),
        cfg.store_dir().display()
    );
    println!("  backup marks   {}", r.backup);
    match r.hsm {
        Some(h) => println!(
            "  HSM marks      {} (serials reserved up to {})",
            h.marks, h.tsa_serial_reserved
        ),
        None => println!("  HSM marks      (none recorded)"),
    }
    println!("  restored store {}", r.store);
    if r.store.tsa_serial_mark > r.backup.tsa_serial_mark
        || r.store.crl_number > r.backup.crl_number
    {
        println!(
            "  raised to the HSM's marks: new time-stamp serials start at {} or above, the next CRL number \
             is above {}",
            r.store.tsa_serial_mark, r.store.crl_number
        );
    }
    if let Some(p) = &r.replaced {
        println!("  the replaced store is kept in {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_record_round_trips_and_refuses_other_versions() {
        let m = TokenMarks {
            marks: Marks {
                tsa_serial_mark: 8193,
                crl_number: 4,
                ledger_size: 17,
            },
            tsa_serial_reserved: 12289,
        };
        let v = serde_json::to_vec(&MarksRecord {
            version: MARKS_VERSION,
            marks: m,
        })
        .unwrap();
        assert_eq!(decode_marks(&v).unwrap(), m);
        let text = String::from_utf8(v).unwrap();
        assert!(text.contains("\"tsa_serial_mark\":8193"), "{text}");
        assert!(text.contains("\"tsa_serial_reserved\":12289"), "{text}");
        assert_eq!(m.floor().tsa_serial_mark, 12289);
        assert!(
            decode_marks(br#"{"version":2,"tsa_serial_mark":1,"crl_number":1,"ledger_size":1}"#)
                .is_err()
        );
        assert!(decode_marks(b"garbage").is_err());
    }

    #[test]
    fn a_live_lock_is_seen_from_another_process() {
        // The lock is held by a child process (POSIX locks of the caller itself are invisible to F_GETLK).
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("LOCK");
        assert_eq!(lock_holder(&lock).unwrap(), None, "no file: no holder");
        std::fs::write(&lock, b"").unwrap();
        assert_eq!(lock_holder(&lock).unwrap(), None);
        // RocksDB takes POSIX record locks (fcntl), as python's fcntl.lockf does; flock(1) would not.
        let mut holder = std::process::Command::new("python3")
            .arg("-c")
            .arg("import fcntl,sys,time; f=open(sys.argv[1],'r+'); fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(30)")
            .arg(&lock)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 (apt-get install python3) for a POSIX lock held by another process");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "locked");
        let pid = lock_holder(&lock).unwrap();
        holder.kill().unwrap();
        holder.wait().unwrap();
        assert_eq!(pid, Some(holder.id() as i32));
    }

    #[test]
    fn a_damaged_or_incomplete_backup_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("live");
        let store = Store::open(&db, esigd_store::StoreOptions::default()).unwrap();
        let mut b = esigd_store::Batch::new();
        b.put(esigd_store::Cf::Signatures, b"k".to_vec(), b"v".to_vec());
        store.commit_blocking(b).unwrap();
        let cfg = Config::dev_defaults(dir.path());
        let backup = dir.path().join("b");
        let m = create_backup(&cfg, &store, &backup).unwrap();
        assert_eq!(m.column_families["signatures"], 1);
        assert!(m.files.iter().any(|f| f.path == "db/CURRENT"));
        verify_backup(&backup).unwrap();
        // Not into a non-empty directory, not a relative one.
        assert!(create_backup(&cfg, &store, &backup).is_err());
        assert!(create_backup(&cfg, &store, Path::new("relative")).is_err());
        // An extra file, a changed file, a missing manifest.
        std::fs::write(backup.join("db/extra"), b"x").unwrap();
        let e = format!("{:#}", verify_backup(&backup).unwrap_err());
        assert!(e.contains("db/extra is not in the manifest"), "{e}");
        std::fs::remove_file(backup.join("db/extra")).unwrap();
        let current = backup.join("db/CURRENT");
        let mut text = std::fs::read(&current).unwrap();
        text.push(b'\n');
        std::fs::write(&current, text).unwrap();
        let e = format!("{:#}", verify_backup(&backup).unwrap_err());
        assert!(e.contains("db/CURRENT is damaged"), "{e}");
        std::fs::remove_file(backup.join(MANIFEST)).unwrap();
        let e = format!("{:#}", verify_backup(&backup).unwrap_err());
        assert!(e.contains("incomplete backup"), "{e}");
    }
}
