//! The configuration file: a `botpress.config.json`-style file (only
//! `pro.monitoring` and `pro.alerting` are read; everything else is
//! ignored) or a file holding just `{ "monitoring": …, "alerting": … }`.
//!
//! Defaults are the original's (`collectionInterval` 10s, `retentionPeriod`
//! 10d, `janitorInterval` 15m, `watcherInterval` 10s). A section that is
//! present is enabled unless it says `"enabled": false`; running with no
//! file at all means monitoring and alerting enabled with no rules.
//! Unknown keys inside the two sections are rejected (they are almost
//! always typos). Every problem is reported at once, by JSON path. Problems
//! inside a section that says `"enabled": false` are warnings
//! ([`Config::ignored`]), not errors: Botpress ≤ 12.21.1 wrote
//! `"rules": [{}]` into its default configuration with alerting disabled.

use metrics_model::Duration;
pub use metrics_model::config::{MONITORING_KEYS, MonitoringConfig};
use metrics_model::config::{
    check_keys, disabled_problems, duration_key, enabled, interval, monitoring, root, section,
};
use serde_json::{Map, Value};

use crate::error::{ConfigError, Problems};
use crate::rule::{RuleSet, parse_rules};
use crate::silence::{MaintenanceWindow, parse_maintenance};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// `pro.monitoring` (or `monitoring`).
    pub monitoring: MonitoringConfig,
    /// `pro.alerting` (or `alerting`).
    pub alerting: AlertingConfig,
    /// Problems inside a section that says `"enabled": false`, which are
    /// reported as warnings, not errors: Botpress ≤ 12.21.1 wrote
    /// `"rules": [{}]` into its default configuration, with alerting
    /// disabled. Each is `<path>: <message>`.
    pub ignored: Vec<String>,
}

/// The alerting section.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertingConfig {
    /// Whether rules are evaluated.
    pub enabled: bool,
    /// Rules are evaluated at every multiple of this (> 0).
    pub watcher_interval: Duration,
    /// How long resolved incidents are kept (> 0).
    pub retention_period: Duration,
    /// How often old incidents are removed (> 0).
    pub janitor_interval: Duration,
    /// How long after an instant `t` the live alerter waits before
    /// evaluating it, so that ticks stamped ≤ `t` have arrived.
    pub evaluation_delay: Duration,
    /// After a restart, missed instants are evaluated back to at most this
    /// far.
    pub catch_up_limit: Duration,
    /// The rules.
    pub rules: RuleSet,
    /// The `hooks` object as written, validated by the `incidents` crate
    /// (this crate knows nothing of hooks).
    pub hooks: Option<Value>,
    /// Maintenance windows (`maintenance`): recurring silences.
    pub maintenance: Vec<MaintenanceWindow>,
}

fn d(text: &str) -> Duration {
    // Only called on the constant defaults below.
    text.parse().unwrap_or_default()
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            enabled: true,
            watcher_interval: d("10s"),
            retention_period: d("10d"),
            janitor_interval: d("15m"),
            evaluation_delay: d("1s"),
            catch_up_limit: d("1h"),
            rules: RuleSet::default(),
            hooks: None,
            maintenance: Vec::new(),
        }
    }
}

/// Keys of the alerting section.
pub const ALERTING_KEYS: [&str; 11] = [
    "enabled",
    "watcherInterval",
    "retentionPeriod",
    "janitorInterval",
    "evaluationDelay",
    "catchUpLimit",
    "rules",
    "hooks",
    "maintenance",
    "notifiers",
    "externalUrl",
];

impl Config {
    /// Parses a configuration file's text. `source_name` (usually the path)
    /// names the file in syntax errors, which give line and column.
    pub fn from_json_text(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| ConfigError::from_json(source_name, &e))?;
        Config::from_json(&value)
    }

    /// Parses a configuration document.
    pub fn from_json(value: &Value) -> Result<Config, ConfigError> {
        let mut p = Problems::default();
        let Some((prefix, root)) = root(value, &mut p) else {
            return p.into_result(Config::default());
        };
        let mut config = Config::default();
        if let Some(section) = section(root, prefix, "monitoring", &mut p) {
            let mut sp = Problems::default();
            config.monitoring = monitoring(section, &format!("{prefix}monitoring"), &mut sp);
            disabled_problems(config.monitoring.enabled, sp, &mut p, &mut config.ignored);
        }
        if let Some(section) = section(root, prefix, "alerting", &mut p) {
            let mut sp = Problems::default();
            config.alerting = alerting(section, &format!("{prefix}alerting"), &mut sp);
            disabled_problems(config.alerting.enabled, sp, &mut p, &mut config.ignored);
        }
        p.into_result(config)
    }

    /// Things worth a warning in a valid configuration (the problems of
    /// disabled sections first).
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = self
            .ignored
            .iter()
            .map(|p| format!("{p} (ignored: the section is disabled)"))
            .collect();
        if self.alerting.enabled && !self.monitoring.enabled {
            w.push("alerting is enabled but monitoring is disabled: no tick will be collected for the rules".into());
        }
        if self.alerting.enabled && self.alerting.rules.is_empty() {
            w.push("alerting is enabled but there is no rule".into());
        }
        w
    }
}

fn alerting(obj: &Map<String, Value>, path: &str, p: &mut Problems) -> AlertingConfig {
    check_keys(obj, path, &ALERTING_KEYS, p);
    let def = AlertingConfig::default();
    let evaluation_delay = match obj.get("evaluationDelay") {
        None | Some(Value::Null) => def.evaluation_delay,
        Some(_) => {
            duration_key(obj, path, "evaluationDelay", None, p).unwrap_or(def.evaluation_delay)
        }
    };
    let rules = match obj.get("rules") {
        None | Some(Value::Null) => RuleSet::default(),
        Some(v) => parse_rules(v, &format!("{path}.rules"), p),
    };
    AlertingConfig {
        enabled: enabled(obj, path, p),
        watcher_interval: interval(obj, path, "watcherInterval", def.watcher_interval, p),
        retention_period: interval(obj, path, "retentionPeriod", def.retention_period, p),
        janitor_interval: interval(obj, path, "janitorInterval", def.janitor_interval, p),
        evaluation_delay,
        catch_up_limit: interval(obj, path, "catchUpLimit", def.catch_up_limit, p),
        rules,
        hooks: obj.get("hooks").filter(|v| !v.is_null()).cloned(),
        maintenance: match obj.get("maintenance") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => parse_maintenance(v, &format!("{path}.maintenance"), p),
        },
    }
}

/// What a rules file holds: the rules, and when it is a configuration
/// file, its `watcherInterval` (if set) and maintenance windows.
#[derive(Debug, Clone, Default)]
pub struct RulesFile {
    /// The rules.
    pub rules: RuleSet,
    /// The file's `watcherInterval`, when it is a configuration that sets one.
    pub watcher_interval: Option<Duration>,
    /// The file's maintenance windows (a configuration's `maintenance`).
    pub maintenance: Vec<MaintenanceWindow>,
}

/// Reads rules from a rules file's text: either a JSON array of rules or a
/// configuration file holding them (`pro.alerting.rules` or
/// `alerting.rules`). Also returns the file's `watcherInterval` when it is a
/// configuration file that sets one.
pub fn rules_from_json_text(
    text: &str,
    source_name: &str,
) -> Result<(RuleSet, Option<Duration>), ConfigError> {
    rules_file_from_json_text(text, source_name).map(|f| (f.rules, f.watcher_interval))
}

/// [`rules_from_json_text`] with the file's maintenance windows.
pub fn rules_file_from_json_text(text: &str, source_name: &str) -> Result<RulesFile, ConfigError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| ConfigError::from_json(source_name, &e))?;
    if value.is_array() {
        return Ok(RulesFile {
            rules: RuleSet::from_json(&value, "rules")?,
            ..RulesFile::default()
        });
    }
    let config = Config::from_json(&value)?;
    let section = value.get("pro").unwrap_or(&value).get("alerting");
    let watcher = section
        .and_then(|s| s.get("watcherInterval"))
        .map(|_| config.alerting.watcher_interval);
    Ok(RulesFile {
        rules: config.alerting.rules,
        watcher_interval: watcher,
        maintenance: config.alerting.maintenance,
    })
}
