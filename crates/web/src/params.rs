//! The API's query parameters, parsed without I/O: each endpoint's
//! parameters become a typed query or an [`ApiError`] naming the bad
//! parameter. Pure functions of the decoded query and the current time, so
//! they are fuzzed on their own (`tests/fuzz_http_params.rs`); the handlers
//! in [`crate::api`] only call them. Semantics: `docs/api.md`.

use std::collections::{HashMap, HashSet};

use metrics_model::time::{Millis, parse_rfc3339};
use metrics_model::{HostName, Key};

use crate::api::ApiError;
use crate::cache::{self, Grid, Stat};

/// The longest range any endpoint accepts.
pub const MAX_RANGE_MS: i64 = 31 * 86_400_000;
/// The latest accepted time parameter: 9999-12-31T23:59:59.999Z.
pub const MAX_TIME_MS: Millis = 253_402_300_799_999;
/// Automatic steps, smallest first: the first giving at most [`AUTO_POINTS`]
/// buckets is used.
pub const AUTO_STEPS: [i64; 7] = [
    10_000, 30_000, 60_000, 300_000, 900_000, 1_800_000, 3_600_000,
];
/// Buckets per series that `step=auto` aims at, at most.
pub const AUTO_POINTS: i64 = 720;
/// Default `range` of `series` and `overview`: 15 minutes.
pub const DEFAULT_RANGE_MS: i64 = 900_000;
/// Default `range` of `incidents`: one day.
pub const DEFAULT_INCIDENTS_RANGE_MS: i64 = 86_400_000;
/// Default and largest `limit` of `incidents`.
pub const INCIDENTS_LIMIT: (usize, usize) = (500, 10_000);

/// The decoded query string of a request (`name → value`).
pub type QueryMap = HashMap<String, String>;

/// Query parameters, checked against the names an endpoint knows.
struct Args<'a> {
    map: &'a QueryMap,
}

impl<'a> Args<'a> {
    fn new(map: &'a QueryMap, known: &[&str]) -> Result<Args<'a>, ApiError> {
        let mut names: Vec<&String> = map.keys().collect();
        names.sort();
        for name in names {
            if !known.contains(&name.as_str()) {
                let known = if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                };
                return Err(ApiError::bad(
                    name,
                    format!("unknown parameter; known: {known}"),
                ));
            }
        }
        Ok(Args { map })
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.map.get(name).map(String::as_str)
    }

    fn time(&self, name: &str) -> Result<Option<Millis>, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        let ms = match text.parse::<Millis>() {
            Ok(ms) => ms,
            Err(_) => parse_rfc3339(text).ok_or_else(|| {
                ApiError::bad(
                    name,
                    format!(
                        "{text:?} is neither milliseconds since the epoch nor an RFC 3339 time"
                    ),
                )
            })?,
        };
        // Bounded so that range arithmetic cannot overflow.
        if !(0..=MAX_TIME_MS).contains(&ms) {
            return Err(ApiError::bad(
                name,
                format!("{text:?} is outside 1970-01-01 .. 9999-12-31"),
            ));
        }
        Ok(Some(ms))
    }

    fn duration(&self, name: &str) -> Result<Option<i64>, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        let d =
            metrics_model::duration::parse_positive(text).map_err(|e| ApiError::bad(name, e))?;
        Ok(Some(d.as_millis_i64()))
    }

    /// `from`/`to`/`range`: `to` defaults to `now`, `from` to `to − range`
    /// (not before 1970).
    fn window(&self, now: Millis, default_range: i64) -> Result<(Millis, Millis), ApiError> {
        let to = self.time("to")?.unwrap_or(now);
        let from = match (self.time("from")?, self.duration("range")?) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad(
                    "range",
                    "give either from or range, not both",
                ));
            }
            (Some(f), None) => f,
            (None, r) => {
                let range = r.unwrap_or(default_range);
                if range > MAX_RANGE_MS {
                    return Err(ApiError::bad("range", "the range is longer than 31d"));
                }
                // Nothing is stored before 1970: a window reaching back
                // further starts there.
                (to - range).max(0)
            }
        };
        if from > to {
            return Err(ApiError::bad("from", "must not be after to"));
        }
        if to - from > MAX_RANGE_MS {
            return Err(ApiError::bad("from", "the range is longer than 31d"));
        }
        Ok((from, to))
    }

    /// The parameter that set `from`: `range` or `from` when given, else
    /// `to` (the default range ends there).
    fn range_name(&self) -> &'static str {
        if self.get("range").is_some() {
            "range"
        } else if self.get("from").is_some() {
            "from"
        } else {
            "to"
        }
    }

    fn list(&self, name: &str) -> Option<Vec<&'a str>> {
        self.get(name).map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
    }

    /// `nodes=a,b`: each a valid node name, each once (first order kept).
    fn nodes(&self) -> Result<Option<Vec<HostName>>, ApiError> {
        let Some(list) = self.list("nodes") else {
            return Ok(None);
        };
        let mut seen = HashSet::with_capacity(list.len());
        let mut out: Vec<HostName> = Vec::with_capacity(list.len());
        for n in list {
            let host: HostName = n.parse().map_err(|e: metrics_model::host::HostNameError| {
                ApiError::bad("nodes", e.to_string())
            })?;
            if seen.insert(host.clone()) {
                out.push(host);
            }
        }
        Ok(Some(out))
    }

    fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        let Some(text) = self.get("limit") else {
            return Ok(default);
        };
        match text.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad(
                "limit",
                format!("{text:?} is not a number from 1 to {max}"),
            )),
        }
    }
}

/// `GET /api/v1/nodes` takes no parameter.
pub fn nodes_query(q: &QueryMap) -> Result<(), ApiError> {
    Args::new(q, &[]).map(|_| ())
}

/// The most values one `series` request may ask for: nodes × fields ×
/// buckets × statistics. Each value is an `f32` in its shortest JSON form
/// (at most 15 bytes and a comma) or `null`, so a response stays under
/// [`series_response_bound`] (about 17 MB at the limit).
pub const MAX_VALUES: usize = 1_000_000;

/// The most series (nodes × fields) one `series` request may ask for.
pub const MAX_SERIES: usize = 10_000;

/// The documented bound on the size of any `series` response, bytes:
/// [`series_response_bound`] at [`MAX_SERIES`], [`MAX_VALUES`] and the
/// largest grid.
pub const MAX_SERIES_RESPONSE_BYTES: usize = series_response_bound(MAX_SERIES, 2_001, MAX_VALUES);

/// A `series` request over this many values (or one read from the store
/// rather than the cache) is heavy: at most [`MAX_HEAVY`] are answered at
/// once; the others get a 503 with `Retry-After`.
pub const HEAVY_VALUES: usize = 100_000;

/// Heavy `series` requests answered at once.
pub const MAX_HEAVY: usize = 4;

/// Refuses a `series` request of `series` series (nodes × fields) over
/// `buckets` buckets with `stats` statistics when it asks for more than
/// [`MAX_SERIES`] series or [`MAX_VALUES`] values; returns the number of
/// values.
pub fn check_values(series: usize, buckets: usize, stats: usize) -> Result<usize, ApiError> {
    if series > MAX_SERIES {
        return Err(ApiError::bad(
            "fields",
            format!(
                "the request asks for {series} series (nodes × fields); the limit is \
                 {MAX_SERIES}: ask for fewer fields or nodes"
            ),
        ));
    }
    let values = series.saturating_mul(buckets).saturating_mul(stats);
    if values > MAX_VALUES {
        return Err(ApiError::bad(
            "fields",
            format!(
                "the request asks for {values} values ({series} series of nodes × fields, \
                 {buckets} buckets, {stats} statistics); the limit is {MAX_VALUES}: ask for \
                 fewer fields, nodes or statistics, or a larger step"
            ),
        ));
    }
    Ok(values)
}

/// An upper bound on the size in bytes of a `series` response of `series`
/// series over `buckets` buckets holding `values` values in all, with host
/// names and field names at their longest (253 and 80 bytes; neither holds
/// a character JSON escapes).
pub const fn series_response_bound(series: usize, buckets: usize, values: usize) -> usize {
    // {"from":…,"to":…,"step":…,"t":[…],"series":[…]}: three numbers of at
    // most 20 bytes, each instant at most 16 bytes and a comma.
    let head = 120 + buckets * 17;
    // {"node":"…","field":"…"} and five `"count":[]` keys.
    let per_series = 40 + 253 + 80 + 5 * 12;
    // A value: an `f32` in its shortest form (at most 15 bytes) or null,
    // and a comma.
    head + series * per_series + values * 16
}

/// `GET /api/v1/series` parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesQuery {
    /// Start of the range (ms since the epoch).
    pub from: Millis,
    /// End of the range, inclusive.
    pub to: Millis,
    /// `fields=`: at least one key (a field, or a field with an instance:
    /// `disk.usage[/var]`).
    pub fields: Vec<Key>,
    /// `stats=`: default avg, min, max.
    pub stats: Vec<Stat>,
    /// The step asked for (`step=` or `auto`), before [`SeriesQuery::plan`]
    /// clamps it.
    pub wanted_step: i64,
    /// `nodes=`: `None` means every node.
    pub nodes: Option<Vec<HostName>>,
}

/// How a [`SeriesQuery`] is answered at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesPlan {
    /// The range lies within the cache's roll-up span (8 d).
    pub cached: bool,
    /// The range lies within the raw span (25 h, less a minute).
    pub raw: bool,
    /// The buckets (at most [`cache::MAX_POINTS`] + 1).
    pub grid: Grid,
}

impl SeriesQuery {
    /// Parses `series` parameters; `now` is the default `to`.
    pub fn parse(q: &QueryMap, now: Millis) -> Result<SeriesQuery, ApiError> {
        let args = Args::new(
            q,
            &["fields", "nodes", "from", "to", "range", "step", "stats"],
        )?;
        let (from, to) = args.window(now, DEFAULT_RANGE_MS)?;
        let fields: Vec<Key> = match args.list("fields") {
            None => {
                return Err(ApiError::bad(
                    "fields",
                    "required, e.g. fields=cpu.usage,mem.usage",
                ));
            }
            Some(l) if l.is_empty() => return Err(ApiError::bad("fields", "no field given")),
            Some(l) => l
                .into_iter()
                .map(|f| Key::parse_tick_key(f).map_err(|e| ApiError::bad("fields", e.to_string())))
                .collect::<Result<_, _>>()?,
        };
        // Each field once: a repeated name adds nothing but size.
        let mut fields = fields;
        let mut seen = std::collections::HashSet::new();
        fields.retain(|f| seen.insert(f.clone()));
        let stats: Vec<Stat> = match args.list("stats") {
            None => vec![Stat::Avg, Stat::Min, Stat::Max],
            Some(l) if l.is_empty() => return Err(ApiError::bad("stats", "no statistic given")),
            Some(l) => l
                .into_iter()
                .map(|s| {
                    cache::stat_from_name(s).ok_or_else(|| {
                        ApiError::bad(
                            "stats",
                            format!("unknown statistic {s:?}; use avg, min, max, sum, count"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let mut stats = stats;
        let mut seen_stats = Vec::new();
        stats.retain(|s| {
            let new = !seen_stats.contains(s);
            seen_stats.push(*s);
            new
        });
        // `step`: a duration, or `auto` (the default): the smallest of
        // AUTO_STEPS giving at most AUTO_POINTS buckets.
        let wanted_step = match args.get("step") {
            None | Some("auto") => AUTO_STEPS
                .iter()
                .copied()
                .find(|s| (to - from) / s <= AUTO_POINTS)
                .unwrap_or(3_600_000),
            Some(_) => args.duration("step")?.unwrap_or(10_000),
        };
        let query = SeriesQuery {
            from,
            to,
            fields,
            stats,
            wanted_step,
            nodes: args.nodes()?,
        };
        // With `nodes=` given the size is known now; otherwise the handler
        // checks it once it knows the nodes.
        if let Some(nodes) = &query.nodes {
            let grid = query.plan(now).grid;
            check_values(nodes.len() * query.fields.len(), grid.n, query.stats.len())?;
        }
        Ok(query)
    }

    /// Which tier answers at `now`, and the grid: the step is at least the
    /// tier's resolution (1 s raw, 5 min roll-ups) and large enough for at
    /// most [`cache::MAX_POINTS`] buckets.
    pub fn plan(&self, now: Millis) -> SeriesPlan {
        let cached = self.from >= now - cache::ROLLUP_SPAN_MS;
        let raw = self.from >= now - cache::RAW_SPAN_MS + 60_000;
        let unit = if raw || !cached {
            1_000
        } else {
            cache::ROLLUP_MS
        };
        let step = cache::clamp_step(self.from, self.to, self.wanted_step, unit);
        SeriesPlan {
            cached,
            raw,
            grid: Grid::new(self.from, self.to, step),
        }
    }
}

/// `GET /api/v1/overview` parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct OverviewQuery {
    /// Start of the range.
    pub from: Millis,
    /// End of the range, inclusive.
    pub to: Millis,
    /// `nodes=`: `None` means every node.
    pub nodes: Option<Vec<HostName>>,
}

impl OverviewQuery {
    /// Parses `overview` parameters; the range must start within the
    /// roll-up span (8 d before `now`).
    pub fn parse(q: &QueryMap, now: Millis) -> Result<OverviewQuery, ApiError> {
        let args = Args::new(q, &["nodes", "from", "to", "range"])?;
        let (from, to) = args.window(now, DEFAULT_RANGE_MS)?;
        if from < now - cache::ROLLUP_SPAN_MS {
            return Err(ApiError::bad(
                args.range_name(),
                "the overview reaches back 8d at most",
            ));
        }
        Ok(OverviewQuery {
            from,
            to,
            nodes: args.nodes()?,
        })
    }
}

/// Default and largest `limit` of `disks`.
pub const DISKS_LIMIT: (usize, usize) = (50, 1_000);
/// The most watched processes an overview row lists (by name); the rest
/// are counted in `processesMore`.
pub const MAX_PROCESSES_PER_NODE: usize = 64;
/// The most interfaces an overview row's `network` details (by name); the
/// rest are counted in `interfacesMore` (their rates are in the sums).
pub const MAX_INTERFACES_PER_NODE: usize = 32;

/// The longest JSON string of an instance: 256 bytes, each escaped to at
/// most 2 (`"` and `\`; instances hold no control character), and quotes.
const INSTANCE_JSON: usize = 2 * metrics_model::key::INSTANCE_MAX + 2;
/// The longest JSON string of a node name (253 bytes, nothing escaped).
const NODE_JSON: usize = 253 + 2;
/// The longest JSON number of an `f64` or `f32` (`-1.2345678901234567e-308`),
/// or `null`, with a comma.
const NUMBER_JSON: usize = 25;

/// An upper bound on the size in bytes of a `disks` response of `rows`
/// rows.
pub const fn disks_response_bound(rows: usize) -> usize {
    // {"from":…,"to":…,"now":…,"total":…,"disks":[…]}
    let head = 80 + 4 * NUMBER_JSON;
    // {"node":…,"mount":…,"usage":…,"free":…,"inodes":…},
    let row = 50 + NODE_JSON + INSTANCE_JSON + 3 * NUMBER_JSON;
    head + rows * row
}

/// An upper bound on the size in bytes of an `overview` response of
/// `nodes` rows (each with at most [`MAX_PROCESSES_PER_NODE`] processes and
/// [`MAX_INTERFACES_PER_NODE`] interfaces).
pub const fn overview_response_bound(nodes: usize) -> usize {
    let head = 80 + 4 * NUMBER_JSON;
    // The version-1 columns: 14 keys of at most 12 bytes and their values.
    let base = 14 * 14 + NODE_JSON + 13 * NUMBER_JSON;
    // "diskPeak":{"mount":…,"usage":…}
    let disk = 40 + INSTANCE_JSON + NUMBER_JSON;
    // {"name":…,"count":…,"cpu":…,"mem":…},
    let process = 40 + INSTANCE_JSON + 3 * NUMBER_JSON;
    // "network":{"rx":…,"tx":…,"rxPeak":…,"txPeak":…,"errors":…,
    // "interfaces":[…],"interfacesMore":…}
    let network = 90 + 6 * NUMBER_JSON;
    let interface = 30 + INSTANCE_JSON + 2 * NUMBER_JSON;
    // "processes":[…],"processesMore":…
    let row = base
        + disk
        + 40
        + NUMBER_JSON
        + MAX_PROCESSES_PER_NODE * process
        + network
        + MAX_INTERFACES_PER_NODE * interface;
    head + nodes * row
}

/// `GET /api/v1/disks` parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct DisksQuery {
    /// Start of the range.
    pub from: Millis,
    /// End of the range, inclusive.
    pub to: Millis,
    /// `nodes=`: `None` means every node.
    pub nodes: Option<Vec<HostName>>,
    /// At most this many rows (worst first).
    pub limit: usize,
}

impl DisksQuery {
    /// Parses `disks` parameters: those of `overview` and `limit`.
    pub fn parse(q: &QueryMap, now: Millis) -> Result<DisksQuery, ApiError> {
        let args = Args::new(q, &["nodes", "from", "to", "range", "limit"])?;
        let (from, to) = args.window(now, DEFAULT_RANGE_MS)?;
        if from < now - cache::ROLLUP_SPAN_MS {
            return Err(ApiError::bad(
                args.range_name(),
                "the disks view reaches back 8d at most",
            ));
        }
        Ok(DisksQuery {
            from,
            to,
            limit: args.limit(DISKS_LIMIT.0, DISKS_LIMIT.1)?,
            nodes: args.nodes()?,
        })
    }
}

/// `GET /api/v1/incidents` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncidentsQuery {
    /// Start of the range for resolved incidents.
    pub from: Millis,
    /// End of the range, inclusive.
    pub to: Millis,
    /// At most this many resolved incidents.
    pub limit: usize,
}

impl IncidentsQuery {
    /// Parses `incidents` parameters.
    pub fn parse(q: &QueryMap, now: Millis) -> Result<IncidentsQuery, ApiError> {
        let args = Args::new(q, &["from", "to", "range", "limit"])?;
        let (from, to) = args.window(now, DEFAULT_INCIDENTS_RANGE_MS)?;
        let limit = args.limit(INCIDENTS_LIMIT.0, INCIDENTS_LIMIT.1)?;
        Ok(IncidentsQuery { from, to, limit })
    }
}
