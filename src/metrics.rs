//! The process's metrics, in one Prometheus registry (the `prometheus-client` crate) and
//! served at `/metrics` in the OpenMetrics text format. Counters and histograms are
//! recorded where things happen; the gauges that describe the database (tasks, subtasks,
//! credentials, scheduler lag) are set from one snapshot at each scrape (`render`).
//! Label values are bounded: stage, platform and error code come from rotor's own types
//! and configuration, intake kinds from the three routing keys.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: String,
    platform: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RotationLabels {
    outcome: String,
    error_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntakeLabels {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

type StageHistogram = Family<StageLabels, Histogram, fn() -> Histogram>;

struct Metrics {
    registry: Registry,
    stage_duration: StageHistogram,
    rotations: Family<RotationLabels, Counter>,
    intake: Family<IntakeLabels, Counter>,
    lease_takeovers: Counter,
    scheduler_ticks: Counter,
    scheduler_leader_ticks: Counter,
    heartbeat_checks: Counter,
    heartbeat_out_of_sync: Counter,
    up: Gauge,
    uptime: Gauge,
    broker_connected: Gauge,
    tasks: Family<StatusLabels, Gauge>,
    tasks_unresolved: Gauge,
    subtasks: Family<StatusLabels, Gauge>,
    subtasks_runnable: Gauge,
    credentials: Family<StatusLabels, Gauge>,
    auto_rotate_stopped: Gauge,
    breaker_open: Gauge,
    scheduler_lag: Gauge,
}

/// 10 ms to about 164 s: a vault write is milliseconds, a refused login seconds, a slow
/// host's APPLY tens of seconds.
fn stage_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 15))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut r = Registry::default();
    let stage_duration = StageHistogram::new_with_constructor(stage_histogram);
    r.register(
        "rotor_stage_duration_seconds",
        "Time a stage of a subtask took, by stage and platform",
        stage_duration.clone(),
    );
    let m = Metrics {
        stage_duration,
        rotations: Family::default(),
        intake: Family::default(),
        lease_takeovers: Counter::default(),
        scheduler_ticks: Counter::default(),
        scheduler_leader_ticks: Counter::default(),
        heartbeat_checks: Counter::default(),
        heartbeat_out_of_sync: Counter::default(),
        up: Gauge::default(),
        uptime: Gauge::default(),
        broker_connected: Gauge::default(),
        tasks: Family::default(),
        tasks_unresolved: Gauge::default(),
        subtasks: Family::default(),
        subtasks_runnable: Gauge::default(),
        credentials: Family::default(),
        auto_rotate_stopped: Gauge::default(),
        breaker_open: Gauge::default(),
        scheduler_lag: Gauge::default(),
        registry: Registry::default(),
    };
    // Counters are written with `_total` appended.
    r.register("rotor_rotations", "Subtasks ended or put back for a retry, by outcome (SUCCESSFUL, FAILED, RETRY) and errorCode", m.rotations.clone());
    r.register(
        "rotor_intake_messages",
        "AMQP requests settled, by kind and outcome (accepted, duplicate, refused, requeued)",
        m.intake.clone(),
    );
    r.register(
        "rotor_lease_takeovers",
        "Subtasks this process took over from a worker whose lease had expired",
        m.lease_takeovers.clone(),
    );
    r.register(
        "rotor_scheduler_ticks",
        "Scheduler ticks run by this process",
        m.scheduler_ticks.clone(),
    );
    r.register(
        "rotor_scheduler_leader_ticks",
        "Ticks in which this process held the scheduler lock",
        m.scheduler_leader_ticks.clone(),
    );
    r.register(
        "rotor_heartbeat_checks",
        "Stored passwords checked by the heartbeat in this process",
        m.heartbeat_checks.clone(),
    );
    r.register(
        "rotor_heartbeat_out_of_sync",
        "Credentials this process found changed behind rotor's back",
        m.heartbeat_out_of_sync.clone(),
    );
    r.register("rotor_up", "1 while the process runs", m.up.clone());
    r.register(
        "rotor_uptime_seconds",
        "Seconds since start",
        m.uptime.clone(),
    );
    r.register(
        "rotor_broker_connected",
        "1 while the AMQP intake is connected",
        m.broker_connected.clone(),
    );
    r.register("rotor_tasks", "Tasks by status", m.tasks.clone());
    r.register(
        "rotor_tasks_unresolved",
        "Tasks that left a password rotor cannot name (REMEDIATE repairs them)",
        m.tasks_unresolved.clone(),
    );
    r.register("rotor_subtasks", "Subtasks by status", m.subtasks.clone());
    r.register(
        "rotor_subtasks_runnable",
        "Subtasks a worker could start now (PENDING and due, or IN_PROGRESS with an expired lease)",
        m.subtasks_runnable.clone(),
    );
    r.register(
        "rotor_credentials",
        "Credentials by status",
        m.credentials.clone(),
    );
    r.register(
        "rotor_credentials_auto_rotate_stopped",
        "Credentials whose auto-rotation stopped after scheduler.max_failures failures in a row",
        m.auto_rotate_stopped.clone(),
    );
    r.register(
        "rotor_scheduler_breaker_open",
        "1 while the scheduler's breaker is open (auto-rotation paused everywhere until resumed)",
        m.breaker_open.clone(),
    );
    r.register("rotor_scheduler_lag_seconds", "Now minus the oldest planned auto-rotation still waiting for its tick (0 when none is due)", m.scheduler_lag.clone());
    Metrics { registry: r, ..m }
});

pub fn stage_finished(stage: &str, platform: &str, took: Duration) {
    METRICS
        .stage_duration
        .get_or_create(&StageLabels {
            stage: stage.into(),
            platform: platform.into(),
        })
        .observe(took.as_secs_f64());
}

/// A subtask ended (SUCCESSFUL, FAILED) or was put back for a retry (RETRY).
pub fn rotation(outcome: &str, error_code: &str) {
    METRICS
        .rotations
        .get_or_create(&RotationLabels {
            outcome: outcome.into(),
            error_code: error_code.into(),
        })
        .inc();
}

pub fn intake(kind: &str, outcome: &str) {
    METRICS
        .intake
        .get_or_create(&IntakeLabels {
            kind: kind.into(),
            outcome: outcome.into(),
        })
        .inc();
}

pub fn lease_taken_over() {
    METRICS.lease_takeovers.inc();
}

pub fn scheduler_tick(leader: bool) {
    METRICS.scheduler_ticks.inc();
    if leader {
        METRICS.scheduler_leader_ticks.inc();
    }
}

pub fn heartbeat(checked: usize, drifted: usize) {
    METRICS.heartbeat_checks.inc_by(checked as u64);
    METRICS.heartbeat_out_of_sync.inc_by(drifted as u64);
}

/// What the process and the database say, read at a scrape.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub uptime_seconds: i64,
    pub broker_connected: bool,
    /// None when the database could not be read: its gauges keep their last values.
    pub database: Option<Database>,
}

#[derive(Debug, Default)]
pub struct Database {
    pub tasks: Vec<(String, i64)>,
    pub tasks_unresolved: i64,
    pub subtasks: Vec<(String, i64)>,
    pub subtasks_runnable: i64,
    pub credentials: Vec<(String, i64)>,
    pub auto_rotate_stopped: i64,
    pub scheduler_lag_seconds: i64,
    pub breaker_open: bool,
}

/// Every metric, OpenMetrics text, with the gauges set from `s`.
pub fn render(s: &Snapshot) -> String {
    let m = &*METRICS;
    m.up.set(1);
    m.uptime.set(s.uptime_seconds);
    m.broker_connected.set(i64::from(s.broker_connected));
    if let Some(db) = &s.database {
        for (family, rows) in [
            (&m.tasks, &db.tasks),
            (&m.subtasks, &db.subtasks),
            (&m.credentials, &db.credentials),
        ] {
            // A status with no rows left is gone, not stuck at its last value.
            family.clear();
            for (status, n) in rows {
                family
                    .get_or_create(&StatusLabels {
                        status: status.clone(),
                    })
                    .set(*n);
            }
        }
        m.tasks_unresolved.set(db.tasks_unresolved);
        m.subtasks_runnable.set(db.subtasks_runnable);
        m.auto_rotate_stopped.set(db.auto_rotate_stopped);
        m.scheduler_lag.set(db.scheduler_lag_seconds);
        m.breaker_open.set(i64::from(db.breaker_open));
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &m.registry).expect("writing to a String");
    out
}
