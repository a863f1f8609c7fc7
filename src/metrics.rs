//! Process counters for `/metrics` (the task and credential gauges come from the database).

use std::sync::atomic::{AtomicU64, Ordering};

static SCHEDULER_TICKS: AtomicU64 = AtomicU64::new(0);
static SCHEDULER_LEADER_TICKS: AtomicU64 = AtomicU64::new(0);
static HEARTBEAT_CHECKS: AtomicU64 = AtomicU64::new(0);
static HEARTBEAT_DRIFTED: AtomicU64 = AtomicU64::new(0);

pub fn scheduler_tick(leader: bool) {
    SCHEDULER_TICKS.fetch_add(1, Ordering::Relaxed);
    if leader {
        SCHEDULER_LEADER_TICKS.fetch_add(1, Ordering::Relaxed);
    }
}

/// (ticks run, ticks this process led).
pub fn scheduler_ticks() -> (u64, u64) {
    (
        SCHEDULER_TICKS.load(Ordering::Relaxed),
        SCHEDULER_LEADER_TICKS.load(Ordering::Relaxed),
    )
}

pub fn heartbeat(checked: usize, drifted: usize) {
    HEARTBEAT_CHECKS.fetch_add(checked as u64, Ordering::Relaxed);
    HEARTBEAT_DRIFTED.fetch_add(drifted as u64, Ordering::Relaxed);
}

/// (passwords checked, found out of sync).
pub fn heartbeats() -> (u64, u64) {
    (
        HEARTBEAT_CHECKS.load(Ordering::Relaxed),
        HEARTBEAT_DRIFTED.load(Ordering::Relaxed),
    )
}
