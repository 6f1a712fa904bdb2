//! Shared helpers for the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

/// The bounded wait every test uses.
pub const WAIT: Duration = Duration::from_secs(20);

/// x + 1.
pub fn add_one(x: u64) -> u64 {
    x + 1
}

/// The worker's pid.
pub fn pid(_: ()) -> u32 {
    std::process::id()
}

/// Never returns.
pub fn spin(_: ()) {
    loop {
        std::hint::spin_loop();
    }
}

/// True if `pid` names a live process (not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// Direct children of this process (any state, zombies included).
pub fn children() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{me}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}
