//! Scenario 2 — download and save: the same 42 pages fetched and written to files,
//! sequentially and on a thread pool, with the speedup.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cfutures_combinators::ExecutorExt;
use cfutures_thread_pool::ThreadPoolExecutor;

use crate::report::{timed, BoxError, Out};
use crate::site::{Client, Site, SiteConfig};

/// Threads used to download.
pub const THREADS: usize = 8;

/// Downloads `url` and saves it as `dir/page-N.html`; returns the bytes written.
///
/// # Errors
///
/// If the download or the write fails.
pub fn download_and_save(client: &Client, url: &str, dir: &Path) -> Result<usize, BoxError> {
    let body = client.get(url)?;
    let name = url.rsplit('/').next().unwrap_or("index");
    std::fs::write(dir.join(format!("page-{name}.html")), &body)?;
    Ok(body.len())
}

/// Runs the scenario.
///
/// # Errors
///
/// If the site, the pool or a download fails.
pub fn run(out: &mut Out) -> Result<(), BoxError> {
    let site = Site::start(SiteConfig {
        failing: None,
        slow: None,
        ..SiteConfig::default()
    })?;
    let client = Client::new(Duration::from_secs(10));
    let urls = site.urls();
    let dir = TempDir::new("download")?;

    let (sequential, seq_time) = timed(|| {
        urls.iter()
            .map(|u| download_and_save(&client, u, dir.path()))
            .collect::<Result<Vec<usize>, _>>()
    });
    let bytes: usize = sequential?.iter().sum();

    let pool = ThreadPoolExecutor::new(THREADS)?;
    let (c, d) = (client.clone(), dir.path().to_owned());
    let (pooled, pool_time) = timed(|| -> Result<usize, BoxError> {
        let mut total = 0;
        for r in pool.map(move |u: String| download_and_save(&c, &u, &d), urls.clone())? {
            total += r??; // the task's Result, then the download's
        }
        Ok(total)
    });
    let pooled = pooled?;
    let files = std::fs::read_dir(dir.path())?.count();
    out.say(format!(
        "{} pages, {} KiB, saved to {} ({files} files); both runs wrote the same {} bytes: {}",
        urls.len(),
        bytes / 1024,
        dir.path().display(),
        pooled,
        bytes == pooled
    ));
    out.measured(
        format!("download and save 42 pages on {THREADS} threads"),
        Some(seq_time),
        pool_time,
    );
    Ok(())
}

/// A temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `$TMP/cfutures-<name>-<pid>`.
    ///
    /// # Errors
    ///
    /// If it cannot be created.
    pub fn new(name: &str) -> std::io::Result<TempDir> {
        let p = std::env::temp_dir().join(format!("cfutures-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
