//! What the stored incident states show a reader (the dashboard, `/metrics`,
//! `bp-alerter incidents`, the Alertmanager re-push): the open incidents,
//! the last evaluated instant, and how many records could not be read. The
//! leader restores the full states with [`crate::persist::decode`] instead.

use metrics_model::store::AlertSnapshot;
use metrics_model::time::Millis;
use rules_engine::Incident;

use crate::persist;

/// A reader's view of an [`AlertSnapshot`].
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// The last instant the active alerter committed.
    pub last_evaluated: Option<Millis>,
    /// The open incidents, oldest first (then by rule, host and instance).
    pub open: Vec<Incident>,
    /// State records that could not be read (left alone, counted).
    pub unreadable: usize,
    /// The open incidents whose open is held (muted when it opened, not
    /// notified yet).
    pub held: std::collections::HashSet<uuid::Uuid>,
}

/// The view of `snapshot`.
pub fn view(snapshot: &AlertSnapshot) -> View {
    let (restored, errors) = persist::decode(snapshot);
    let held = restored
        .states
        .iter()
        .filter(|s| s.state.held)
        .filter_map(|s| s.state.open.as_ref().map(|i| i.id))
        .collect();
    let mut open: Vec<Incident> = restored
        .states
        .into_iter()
        .filter_map(|s| s.state.open)
        .collect();
    open.sort_by(|a, b| {
        (a.start_time, &a.rule_name, &a.host_name, &a.instance).cmp(&(
            b.start_time,
            &b.rule_name,
            &b.host_name,
            &b.instance,
        ))
    });
    View {
        last_evaluated: restored.last_evaluated,
        open,
        unreadable: errors.len(),
        held,
    }
}
