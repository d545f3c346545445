//! The hook directory (`data/global/hooks/on_incident_status_changed/` by
//! default).
//!
//! The directory is read again at every delivery, so adding, changing or
//! removing a hook file takes effect at the next transition without a
//! reload. In it:
//! - `*.js` files run with Node.js ([`JsHook`]), executable or not;
//! - other regular files with an execute bit run directly ([`ExecHook`]);
//! - names starting with `.` (editor and temporary files) are skipped
//!   silently; anything else (non-executable files, directories) is skipped
//!   with one warning per name.
//!
//! A missing directory means no file hook. Hooks are named after their file
//! name (`alert.js`).

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use metrics_model::Duration;
use metrics_model::time::format_rfc3339;

use super::process::{self, ProcessSpec};
use super::{Delivery, Hook, HookError, HookFuture, HookKind};

/// The wrapper that runs a `*.js` hook (passed with `node -e`, the hook
/// file as its argument, the payload on stdin).
///
/// It reads the hook file and runs its body as
/// `new AsyncFunction('bp', 'incident', 'require', '__filename', '__dirname', body)`,
/// so a top-level `return` (of a promise) works, as in the original.
/// `incident` is a copy of the payload's incident with `startTime` and
/// `endTime` as `Date` objects (built from the RFC 3339 text), `endTime`
/// left out (not a key at all) while the incident is open, as in the
/// original; `bp.transition` is the payload unchanged. The
/// process exits when the returned promise settles: 0 when it resolves, 1
/// (with the error on stderr) when it rejects or the body does not compile.
pub const JS_WRAPPER: &str = r"'use strict';
const fs = require('fs');
const path = require('path');
const util = require('util');
const { createRequire } = require('module');
const file = path.resolve(process.argv[process.argv.length - 1]);
const name = path.basename(file);
const payload = JSON.parse(fs.readFileSync(0, 'utf8'));
const MARK = '\u001ebp.';
function emitter(level) {
  return (...args) => {
    const text = util.format(...args);
    process.stdout.write(text.split('\n').map((l) => MARK + level + ' ' + l).join('\n') + '\n');
  };
}
function makeLogger(suffix) {
  const logger = {};
  for (const level of ['debug', 'info', 'warn', 'error']) {
    const emit = emitter(level);
    logger[level] = suffix ? (...args) => emit(...args, suffix) : emit;
  }
  logger.attachError = (e) => makeLogger((e && e.stack) || String(e));
  logger.forBot = () => logger;
  logger.persist = () => logger;
  return logger;
}
const bp = {
  logger: makeLogger(null),
  event: payload.event,
  idempotencyKey: payload.idempotencyKey,
  transition: payload,
};
// The incident as the original gave it: `startTime`/`endTime` as `Date`
// objects, `endTime` absent (not a key) while open. `bp.transition` keeps
// the payload as received (RFC 3339 strings, `endTime` null).
const incident = {};
for (const [key, value] of Object.entries(payload.incident || {})) {
  if (key === 'startTime' || key === 'endTime') {
    if (value !== null && value !== undefined) incident[key] = new Date(value);
  } else {
    incident[key] = value;
  }
}
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
let fn;
try {
  fn = new AsyncFunction('bp', 'incident', 'require', '__filename', '__dirname', fs.readFileSync(file, 'utf8'));
} catch (e) {
  process.stderr.write(name + ': ' + ((e && e.stack) || String(e)) + '\n');
  process.exit(1);
}
fn(bp, incident, createRequire(file), file, path.dirname(file)).then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(name + ': ' + ((e && e.stack) || String(e)) + '\n');
    process.exit(1);
  },
);
";

/// The hook directory and what runs its files.
#[derive(Debug)]
pub struct HookDirectory {
    directory: PathBuf,
    node: PathBuf,
    timeout: Duration,
    warned: Mutex<HashSet<OsString>>,
}

impl HookDirectory {
    /// The directory `directory`; `*.js` files run with `node`; every call
    /// has `timeout`.
    pub fn new(directory: PathBuf, node: PathBuf, timeout: Duration) -> HookDirectory {
        HookDirectory {
            directory,
            node,
            timeout,
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.directory
    }

    /// The hooks in the directory now, sorted by file name. A missing
    /// directory gives none; an unreadable one is an error.
    pub fn scan(&self) -> Result<Vec<Arc<dyn Hook>>, HookError> {
        let entries = match std::fs::read_dir(&self.directory) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.dir_error(&e)),
        };
        let mut found: Vec<(OsString, PathBuf)> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.dir_error(&e))?;
            found.push((entry.file_name(), entry.path()));
        }
        found.sort();
        let mut hooks: Vec<Arc<dyn Hook>> = Vec::new();
        for (file_name, path) in found {
            let name = file_name.to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            // `metadata` follows symbolic links.
            let Ok(meta) = std::fs::metadata(&path) else {
                self.warn_once(&file_name, &name, "it cannot be read (broken link?)");
                continue;
            };
            if !meta.is_file() {
                self.warn_once(&file_name, &name, "it is not a regular file");
            } else if is_js(&path) {
                hooks.push(Arc::new(JsHook {
                    name,
                    path,
                    node: self.node.clone(),
                    timeout: self.timeout,
                }));
            } else if meta.permissions().mode() & 0o111 != 0 {
                hooks.push(Arc::new(ExecHook {
                    name,
                    path,
                    timeout: self.timeout,
                }));
            } else {
                self.warn_once(
                    &file_name,
                    &name,
                    "it is neither a *.js file nor executable (chmod +x to run it)",
                );
            }
        }
        Ok(hooks)
    }

    fn dir_error(&self, e: &std::io::Error) -> HookError {
        HookError::Directory {
            directory: self.directory.display().to_string(),
            message: e.to_string(),
        }
    }

    fn warn_once(&self, key: &OsString, name: &str, why: &str) {
        let mut warned = self
            .warned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if warned.insert(key.clone()) {
            tracing::warn!(
                directory = %self.directory.display(),
                file = name,
                "hook file ignored: {why}"
            );
        }
    }
}

/// A `*.js` hook: run by Node.js through [`JS_WRAPPER`], with `incident`
/// (times as `Date` objects, no `endTime` while open), `bp` (`bp.logger`,
/// `bp.event`, `bp.idempotencyKey`, `bp.transition`) and `require` in
/// scope; the payload and the `BP_*` variables as for [`ExecHook`].
#[derive(Debug, Clone)]
pub struct JsHook {
    name: String,
    path: PathBuf,
    node: PathBuf,
    timeout: Duration,
}

impl Hook for JsHook {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> HookKind {
        HookKind::Process
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> HookFuture<'a> {
        let run = process::run(ProcessSpec {
            hook: self.name.clone(),
            program: self.node.clone(),
            args: vec![
                "-e".into(),
                JS_WRAPPER.into(),
                "--".into(),
                self.path.clone().into_os_string(),
            ],
            env: env_vars(delivery),
            stdin: stdin_bytes(delivery),
            timeout: self.timeout,
        });
        Box::pin(async move {
            run.await.map_err(|e| match e {
                HookError::Spawn {
                    hook,
                    program,
                    message,
                } => HookError::Spawn {
                    hook,
                    program,
                    message: format!(
                        "{message}; *.js hooks need Node.js: install it or set alerting.hooks.node"
                    ),
                },
                other => other,
            })
        })
    }
}

/// An executable hook: run directly (never through a shell) with the
/// transition JSON on stdin (see [`Delivery::stdin_json`]) and the
/// variables of [`env_vars`].
#[derive(Debug, Clone)]
pub struct ExecHook {
    name: String,
    path: PathBuf,
    timeout: Duration,
}

impl Hook for ExecHook {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> HookKind {
        HookKind::Process
    }

    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> HookFuture<'a> {
        Box::pin(process::run(ProcessSpec {
            hook: self.name.clone(),
            program: self.path.clone(),
            args: Vec::new(),
            env: env_vars(delivery),
            stdin: stdin_bytes(delivery),
            timeout: self.timeout,
        }))
    }
}

/// The variables given to file hooks: `BP_INCIDENT_ID`,
/// `BP_INCIDENT_RULE_NAME`, `BP_INCIDENT_HOST_NAME` (`*` for a cluster-wide
/// rule), `BP_INCIDENT_INSTANCE` and `BP_INCIDENT_SEVERITY` (empty when the
/// incident has none), `BP_INCIDENT_START_TIME` and `BP_INCIDENT_END_TIME`
/// (RFC 3339; the end time empty while open), `BP_INCIDENT_TRIGGER_VALUE`,
/// `BP_INCIDENT_EVENT` (`opened` or `resolved`) and `BP_IDEMPOTENCY_KEY`.
/// Labels and the description are in the JSON on stdin.
pub fn env_vars(d: &Delivery) -> Vec<(String, String)> {
    let inc = &d.transition.incident;
    let trigger = serde_json::to_string(&inc.trigger_value).unwrap_or_default();
    vec![
        ("BP_INCIDENT_ID".into(), inc.id.to_string()),
        ("BP_INCIDENT_RULE_NAME".into(), inc.rule_name.to_string()),
        (
            "BP_INCIDENT_HOST_NAME".into(),
            inc.host_name.as_str().to_owned(),
        ),
        (
            "BP_INCIDENT_INSTANCE".into(),
            inc.instance
                .as_ref()
                .map(|i| i.as_str().to_owned())
                .unwrap_or_default(),
        ),
        (
            "BP_INCIDENT_SEVERITY".into(),
            inc.severity.as_deref().unwrap_or_default().to_owned(),
        ),
        (
            "BP_INCIDENT_START_TIME".into(),
            format_rfc3339(inc.start_time),
        ),
        (
            "BP_INCIDENT_END_TIME".into(),
            inc.end_time.map(format_rfc3339).unwrap_or_default(),
        ),
        ("BP_INCIDENT_TRIGGER_VALUE".into(), trigger),
        (
            "BP_INCIDENT_EVENT".into(),
            d.transition.event.as_str().into(),
        ),
        ("BP_IDEMPOTENCY_KEY".into(), d.idempotency_key.clone()),
    ]
}

fn is_js(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("js"))
}

fn stdin_bytes(d: &Delivery) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&d.stdin_json()).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}
