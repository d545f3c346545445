//! The agent's configuration: [`AgentConfig`], built by `bp-collector`
//! from its command line and the monitoring section of its configuration
//! file, or by standalone `bp-alerter` from the monitoring section alone.

use std::net::SocketAddr;

use collector::system::SystemOptions;
use metrics_model::config::MonitoringConfig;
use metrics_model::token::Token;
use metrics_model::{Deployment, Duration, HostName};

/// The default receive buffer asked for on the StatsD socket (8 MiB).
pub const DEFAULT_STATSD_BUFFER: usize = 8 << 20;

/// The default bound on distinct `custom.*` fields.
pub const DEFAULT_MAX_CUSTOM_FIELDS: usize = collector::recorder::DEFAULT_MAX_CUSTOM_FIELDS;

/// How much time of ticks the outage buffer holds by default.
pub const DEFAULT_BUFFER: std::time::Duration = std::time::Duration::from_hours(1);

/// How long a standalone agent keeps writing at shutdown (its store is in
/// memory: it never waits).
pub const STANDALONE_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The agent's configuration (the collector's, resolved from its command
/// line and the monitoring section; or standalone's, from the
/// monitoring section alone: [`AgentConfig::standalone`]).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node's name.
    pub node: HostName,
    /// The collection interval (> 0).
    pub interval: Duration,
    /// Where to receive StatsD, if anywhere.
    pub statsd: Option<SocketAddr>,
    /// The receive buffer asked for on the StatsD socket, bytes.
    pub statsd_buffer: usize,
    /// Where to serve HTTP, if anywhere.
    pub http: Option<SocketAddr>,
    /// The bearer token of the HTTP endpoint.
    pub http_token: Option<Token>,
    /// The bound on distinct custom fields.
    pub max_custom_fields: usize,
    /// How many ticks the outage buffer holds.
    pub buffer_ticks: usize,
    /// How long to try flushing at shutdown.
    pub shutdown_timeout: std::time::Duration,
    /// Store selection from the environment.
    pub deployment: Deployment,
    /// `false` when the configuration file says
    /// `pro.monitoring.enabled: false`: the collector then says so and
    /// exits 0 without collecting, as the original did nothing.
    pub monitoring_enabled: bool,
    /// Problems in a disabled monitoring section (warnings).
    pub warnings: Vec<String>,
    /// What the system sampler reads (filesystems, interfaces, block
    /// devices, watched processes).
    pub system: SystemOptions,
}

impl AgentConfig {
    /// Standalone mode's agent for this machine: ticks every
    /// `collectionInterval` of `monitoring`, StatsD on `statsd`, no HTTP
    /// endpoint, the default bounds, and an outage buffer of
    /// [`DEFAULT_BUFFER`] (its store is the process's own memory).
    pub fn standalone(
        node: HostName,
        statsd: Option<SocketAddr>,
        monitoring: &MonitoringConfig,
    ) -> AgentConfig {
        let interval = monitoring.collection_interval;
        AgentConfig {
            node,
            interval,
            statsd,
            statsd_buffer: DEFAULT_STATSD_BUFFER,
            http: None,
            http_token: None,
            max_custom_fields: DEFAULT_MAX_CUSTOM_FIELDS,
            buffer_ticks: buffer_ticks(DEFAULT_BUFFER, interval),
            shutdown_timeout: STANDALONE_SHUTDOWN_TIMEOUT,
            deployment: Deployment::default(),
            monitoring_enabled: monitoring.enabled,
            warnings: Vec::new(),
            system: SystemOptions::from_monitoring(monitoring),
        }
    }
}

/// How many ticks of `interval` hold `span` (at least 1).
pub fn buffer_ticks(span: std::time::Duration, interval: Duration) -> usize {
    let ms = interval.as_millis().max(1);
    usize::try_from((span.as_millis() as u64).div_ceil(ms).max(1)).unwrap_or(usize::MAX)
}
