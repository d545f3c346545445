//! The configuration front door: a file's text → the whole validated
//! configuration (monitoring, alerting with its rules, hooks), used by
//! `bp-alerter run`, its SIGHUP reload, `check-config`, `replay` and
//! `test-rules`. Each section is parsed by the crate that owns it (rules:
//! `rules-engine`; hooks: `incidents`); the collector reads the monitoring
//! section only, through `metrics_model::config`.

use std::path::{Path, PathBuf};

use incidents::hooks::HooksConfig;
use rules_engine::Config;

/// A validated configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    /// Monitoring and alerting (rules included).
    pub config: Config,
    /// The validated `alerting.hooks` (the defaults when absent, or when
    /// alerting is disabled).
    pub hooks: HooksConfig,
}

/// Loads and validates a configuration file, hooks included. Every problem
/// is returned, one per line. When alerting is disabled, problems in its
/// rules and hooks are warnings ([`Config::ignored`]), not errors.
///
/// Paths written in the file (`hooks.directory`, a `hooks.node` with a
/// `/`) are relative to the file's directory; defaults stay relative to
/// the working directory.
pub fn load_config(path: &Path) -> Result<LoadedConfig, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{}: cannot read: {e}", path.display())])?;
    load_config_text(&text, &path.display().to_string(), &config_dir(path))
}

/// [`load_config`] of a file's text: `source` names it in syntax errors,
/// and relative paths written in it are relative to `base`.
pub fn load_config_text(
    text: &str,
    source: &str,
    base: &Path,
) -> Result<LoadedConfig, Vec<String>> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| {
        Config::from_json_text(text, source)
            .err()
            .map(|e| e.problems())
            .unwrap_or_default()
    })?;
    let hooks_path = if value.get("pro").is_some() {
        "pro.alerting.hooks"
    } else {
        "alerting.hooks"
    };
    let config = Config::from_json(&value);
    let raw_hooks = value
        .get("pro")
        .unwrap_or(&value)
        .get("alerting")
        .and_then(|a| a.get("hooks"));
    let hooks = with_notifiers(
        HooksConfig::from_optional(raw_hooks, hooks_path),
        value.get("pro").unwrap_or(&value).get("alerting"),
        hooks_path.trim_end_matches(".hooks"),
    );
    match (config, hooks) {
        (Ok(c), Ok(mut h)) => {
            incidents::notifiers::attach_rules(&mut h.notifiers, &c.alerting.rules);
            if raw_hooks.and_then(|h| h.get("directory")).is_some() {
                h.directory = relative_to(base, &h.directory);
            }
            if raw_hooks.and_then(|h| h.get("node")).is_some() && h.node.components().count() > 1 {
                h.node = relative_to(base, &h.node);
            }
            if !c.alerting.enabled {
                // Never used: the defaults, as if the section were absent.
                h = HooksConfig::default();
            }
            Ok(LoadedConfig {
                config: c,
                hooks: h,
            })
        }
        (Ok(mut c), Err(problems)) if !c.alerting.enabled => {
            c.ignored.extend(problems.iter().map(ToString::to_string));
            Ok(LoadedConfig {
                config: c,
                hooks: HooksConfig::default(),
            })
        }
        (c, h) => {
            let mut problems = c.err().map(|e| e.problems()).unwrap_or_default();
            problems.extend(h.err().unwrap_or_default().iter().map(ToString::to_string));
            Err(problems)
        }
    }
}

/// `alerting.notifiers` and `alerting.externalUrl` (under `prefix`), added
/// to the hooks: every problem of both is returned.
fn with_notifiers(
    hooks: Result<HooksConfig, Vec<rules_engine::Problem>>,
    alerting: Option<&serde_json::Value>,
    prefix: &str,
) -> Result<HooksConfig, Vec<rules_engine::Problem>> {
    let mut problems = Vec::new();
    let external = incidents::notifiers::parse_external_url(
        alerting.and_then(|a| a.get("externalUrl")),
        &format!("{prefix}.externalUrl"),
    )
    .map_err(|p| problems.push(p))
    .ok()
    .flatten();
    let notifiers = incidents::notifiers::parse_notifiers(
        alerting.and_then(|a| a.get("notifiers")),
        &format!("{prefix}.notifiers"),
        external.as_deref(),
    );
    match (hooks, notifiers) {
        (Ok(mut h), Ok(n)) if problems.is_empty() => {
            h.notifiers = n;
            Ok(h)
        }
        (h, n) => {
            let mut all = h.err().unwrap_or_default();
            all.extend(n.err().unwrap_or_default());
            all.extend(problems);
            Err(all)
        }
    }
}

/// A warning when alerting is enabled and the hook directory does not
/// exist (then no file hook runs, which is rarely what was meant).
pub fn hook_directory_warning(config: &Config, hooks: &HooksConfig) -> Option<String> {
    (config.alerting.enabled && !hooks.directory.is_dir()).then(|| {
        format!(
            "the hook directory {} does not exist: no file hook will run (a hooks.directory \
             written in the configuration file is relative to the file's directory; the \
             default is relative to the working directory)",
            hooks.directory.display()
        )
    })
}

/// The directory that relative paths in the configuration file `path` are
/// relative to.
fn config_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn relative_to(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
