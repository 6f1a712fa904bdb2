//! A small web site on loopback, for the I/O scenarios: no internet needed.
//!
//! [`Site::start`] serves `pages` pages at `http://127.0.0.1:PORT/page/N`, each after a
//! configurable delay (a stand-in for network latency), with one page that always fails
//! (503) and one that answers too slowly for the client's per-request timeout. The server
//! listens on port 0 (any free port), serves a bounded number of requests for a bounded
//! time, and stops when the [`Site`] is dropped.
//!
//! The client side is [`Client`]: a `ureq` agent (no TLS compiled) with a per-request
//! timeout and no proxy.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::report::BoxError;

/// What the site serves.
#[derive(Clone, Debug)]
pub struct SiteConfig {
    /// How many pages (`/page/0` … `/page/{pages-1}`).
    pub pages: usize,
    /// How long each page takes to answer.
    pub delay: Duration,
    /// The page that always answers 503 Service Unavailable.
    pub failing: Option<usize>,
    /// The page that answers after `slow_delay` (longer than the client's timeout).
    pub slow: Option<usize>,
    /// How long the slow page takes.
    pub slow_delay: Duration,
    /// Size of each page body, in bytes.
    pub page_size: usize,
    /// How many requests may be handled at once (server threads).
    pub concurrency: usize,
    /// The server stops by itself after this long.
    pub lifetime: Duration,
    /// The server stops by itself after this many requests.
    pub max_requests: usize,
}

impl Default for SiteConfig {
    /// 42 pages of 16 KiB, 25 ms each; page 7 fails, page 13 takes 3 s.
    fn default() -> Self {
        SiteConfig {
            pages: 42,
            delay: Duration::from_millis(25),
            failing: Some(7),
            slow: Some(13),
            slow_delay: Duration::from_secs(3),
            page_size: 16 * 1024,
            concurrency: 24,
            lifetime: Duration::from_secs(120),
            max_requests: 10_000,
        }
    }
}

/// A running loopback web site; stops when dropped.
#[derive(Debug)]
pub struct Site {
    addr: SocketAddr,
    config: SiteConfig,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl Site {
    /// Starts the site on `127.0.0.1`, on a free port.
    ///
    /// # Errors
    ///
    /// If the server cannot listen.
    pub fn start(config: SiteConfig) -> Result<Site, BoxError> {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0")?);
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or("the server did not listen on an IP address")?;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let until = Instant::now() + config.lifetime;
        let threads = (0..config.concurrency.max(1))
            .map(|i| {
                let (server, stop, served, config) =
                    (server.clone(), stop.clone(), served.clone(), config.clone());
                std::thread::Builder::new()
                    .name(format!("site-{i}"))
                    .spawn(move || serve(&server, &config, &stop, &served, until))
                    .expect("spawn a server thread")
            })
            .collect();
        Ok(Site {
            addr,
            config,
            stop,
            served,
            threads,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of page `i`.
    pub fn url(&self, i: usize) -> String {
        format!("{}/page/{i}", self.base_url())
    }

    /// The URLs of every page, in order.
    pub fn urls(&self) -> Vec<String> {
        (0..self.config.pages).map(|i| self.url(i)).collect()
    }

    /// The configuration it serves.
    pub fn config(&self) -> &SiteConfig {
        &self.config
    }

    /// How many requests it has answered.
    pub fn requests_served(&self) -> usize {
        // Relaxed: a statistic.
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // Relaxed: the flag guards no data; threads poll it.
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve(
    server: &tiny_http::Server,
    config: &SiteConfig,
    stop: &AtomicBool,
    served: &AtomicUsize,
    until: Instant,
) {
    let poll = Duration::from_millis(50);
    // Relaxed: see `Drop`; `served` is a bound, not a synchronisation.
    while !stop.load(Ordering::Relaxed)
        && Instant::now() < until
        && served.load(Ordering::Relaxed) < config.max_requests
    {
        let request = match server.recv_timeout(poll) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(_) => return,
        };
        served.fetch_add(1, Ordering::Relaxed);
        let page = request
            .url()
            .strip_prefix("/page/")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n < config.pages);
        let _ = match page {
            None => request
                .respond(tiny_http::Response::from_string("no such page").with_status_code(404)),
            Some(n) if Some(n) == config.failing => {
                sleep_unless(config.delay, stop);
                request.respond(
                    tiny_http::Response::from_string("service unavailable").with_status_code(503),
                )
            }
            Some(n) => {
                let delay = if Some(n) == config.slow {
                    config.slow_delay
                } else {
                    config.delay
                };
                sleep_unless(delay, stop);
                request.respond(tiny_http::Response::from_data(page_body(
                    n,
                    config.page_size,
                )))
            }
        };
    }
}

/// Sleeps for `d`, waking early if `stop` is set (so dropping the site is prompt).
fn sleep_unless(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    loop {
        let now = Instant::now();
        // Relaxed: see `Drop`.
        if now >= end || stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

/// The body of page `n`: `size` bytes of text that name the page.
pub fn page_body(n: usize, size: usize) -> Vec<u8> {
    let line = format!("this is page {n} of the cfutures loopback site\n");
    line.bytes().cycle().take(size).collect()
}

/// An HTTP client with a per-request timeout (a `ureq` agent; cheap to clone).
#[derive(Clone, Debug)]
pub struct Client {
    agent: ureq::Agent,
}

impl Client {
    /// A client whose requests each fail after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .proxy(None)
            .build()
            .new_agent();
        Client { agent }
    }

    /// Fetches `url`: its body, or an error for a failing status, a timeout, or a network
    /// error.
    ///
    /// # Errors
    ///
    /// As above; the error says which.
    pub fn get(&self, url: &str) -> Result<Vec<u8>, ureq::Error> {
        // `Connection: close`: tiny_http writes the headers and the body separately, and on a
        // kept-alive connection Nagle's algorithm and delayed ACKs then add ~40 ms per request.
        let mut response = self.agent.get(url).header("Connection", "close").call()?;
        let mut body = Vec::new();
        response
            .body_mut()
            .as_reader()
            .read_to_end(&mut body)
            .map_err(ureq::Error::Io)?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_pages_a_failure_and_a_slow_page() {
        let site = Site::start(SiteConfig {
            pages: 4,
            delay: Duration::ZERO,
            failing: Some(1),
            slow: Some(2),
            slow_delay: Duration::from_secs(3),
            concurrency: 2,
            ..SiteConfig::default()
        })
        .unwrap();
        let client = Client::new(Duration::from_millis(300));
        assert_eq!(client.get(&site.url(0)).unwrap(), page_body(0, 16 * 1024));
        let failed = client.get(&site.url(1)).unwrap_err();
        assert!(matches!(failed, ureq::Error::StatusCode(503)), "{failed:?}");
        let slow = client.get(&site.url(2)).unwrap_err();
        assert!(matches!(slow, ureq::Error::Timeout(_)), "{slow:?}");
        assert!(client.get(&format!("{}/nope", site.base_url())).is_err());
        assert!(site.requests_served() >= 3);
    }
}
