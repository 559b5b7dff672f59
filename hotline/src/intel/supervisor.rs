//! Supervisor metrics (考核): volume, dispatch coverage and accuracy, re-dispatch (退单) rate, SLA
//! timeliness, callback satisfaction and agent handling time, computed from the ticket store
//! (either backend) for a filter.
//!
//! Definitions:
//! - *dispatched*: tickets with at least one dispatch record;
//! - *auto-dispatch coverage*: dispatched tickets whose first dispatch was automatic;
//! - *auto-dispatch accuracy*: of those auto-dispatched tickets that reached a final department
//!   (replied, called back or closed), the share whose first department is the final lead;
//! - *suggestion accuracy*: the same against the dispatcher's suggestion on every dispatched ticket
//!   that has one (also when a person decided);
//! - *re-dispatch rate*: dispatched tickets returned (退单) at least once;
//! - *SLA on-time rate*: of replied tickets, replied by the reply deadline;
//! - *callback satisfaction*: (satisfied + basically satisfied) / called back;
//! - *agent handling time*: minutes from creation to acceptance (median, p90);
//! - *dispatch by week*: per week of the first dispatch (Monday, UTC+8), the automatic
//!   dispatches, how many of them reached a final department and were right, and how many
//!   tickets agents corrected (a department returned the ticket, or a person sent it elsewhere
//!   than the dispatcher suggested): the automation's accuracy against agents' corrections over
//!   time.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::Serialize;

use crate::tickets::model::{Satisfaction, Status, Ticket};
use crate::tickets::store::{PageRequest, StoreError, TicketFilter, TicketStore};

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rate {
    pub numerator: u64,
    pub denominator: u64,
    /// `null` when the denominator is 0.
    pub rate: Option<f64>,
}

impl Rate {
    fn new(n: u64, d: u64) -> Rate {
        Rate { numerator: n, denominator: d, rate: (d > 0).then(|| n as f64 / d as f64) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverdueItem {
    pub id: i64,
    pub number: String,
    pub status: Status,
    pub lead_dept: Option<String>,
    pub reply_by: Option<DateTime<Utc>>,
}

/// One week of dispatch decisions ([`SupervisorMetrics::dispatch_by_week`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DispatchWeek {
    pub dispatched: u64,
    pub auto: u64,
    /// Automatic dispatches whose ticket reached a final department, and of those the ones whose
    /// first department was the final one.
    pub auto_accuracy: Rate,
    /// Tickets agents corrected: returned (退单) at least once, or sent by a person to another
    /// department than the one suggested.
    pub corrected: Rate,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SupervisorMetrics {
    pub tickets: u64,
    pub by_status: BTreeMap<String, u64>,
    pub by_channel: BTreeMap<String, u64>,
    pub by_type: BTreeMap<String, u64>,
    /// First level of the category.
    pub by_category: BTreeMap<String, u64>,
    pub by_department: BTreeMap<String, u64>,
    pub by_district: BTreeMap<String, u64>,
    /// Tickets created per local (UTC+8) day, `YYYY-MM-DD`.
    pub by_day: BTreeMap<String, u64>,
    pub dispatched: u64,
    pub auto_dispatch_coverage: Rate,
    pub auto_dispatch_accuracy: Rate,
    pub suggestion_accuracy: Rate,
    pub redispatch_rate: Rate,
    pub sla_on_time: Rate,
    pub overdue: Vec<OverdueItem>,
    pub callback_satisfaction: Rate,
    pub satisfaction_counts: BTreeMap<String, u64>,
    pub reopen_rate: Rate,
    pub handling_minutes_median: Option<f64>,
    pub handling_minutes_p90: Option<f64>,
    /// Keyed by the Monday (UTC+8) of the week of the first dispatch, `YYYY-MM-DD`.
    pub dispatch_by_week: BTreeMap<String, DispatchWeek>,
}

fn bump(m: &mut BTreeMap<String, u64>, k: &str) {
    *m.entry(k.to_string()).or_default() += 1;
}

fn final_dept_known(s: Status) -> bool {
    matches!(s, Status::Replied | Status::CallbackDone | Status::Closed)
}

/// Aggregate tickets (already loaded).
pub fn aggregate(tickets: &[Ticket]) -> SupervisorMetrics {
    let mut m = SupervisorMetrics { tickets: tickets.len() as u64, ..Default::default() };
    let (mut auto_first, mut auto_judged, mut auto_right) = (0u64, 0u64, 0u64);
    let (mut sug_judged, mut sug_right) = (0u64, 0u64);
    let (mut returned, mut replied, mut on_time) = (0u64, 0u64, 0u64);
    let (mut called, mut content, mut reopened) = (0u64, 0u64, 0u64);
    let mut handling: Vec<f64> = Vec::new();
    // Per week: dispatched, auto, auto judged, auto right, corrected.
    let mut weeks: BTreeMap<String, (u64, u64, u64, u64, u64)> = BTreeMap::new();
    for t in tickets {
        let b = &t.body;
        bump(&mut m.by_status, b.status.as_str());
        bump(&mut m.by_channel, b.channel.as_str());
        bump(&mut m.by_type, b.request_type.as_str());
        bump(&mut m.by_category, b.category.first().map(String::as_str).unwrap_or("未分类"));
        bump(&mut m.by_department, b.lead_dept.as_deref().unwrap_or("未派发"));
        bump(&mut m.by_district, b.address.district.as_deref().unwrap_or("未知"));
        bump(&mut m.by_day, &(b.created_at + Duration::hours(8)).format("%Y-%m-%d").to_string());
        if let Some(first) = b.dispatches.first() {
            m.dispatched += 1;
            let done = final_dept_known(b.status);
            if first.auto {
                auto_first += 1;
                if done {
                    auto_judged += 1;
                    auto_right += u64::from(b.lead_dept.as_deref() == Some(first.dept.as_str()));
                }
            }
            if let (true, Some(s)) = (done, &first.suggested) {
                sug_judged += 1;
                sug_right += u64::from(b.lead_dept.as_deref() == Some(s.as_str()));
            }
            returned += u64::from(b.returns > 0);
            let local = first.at.unwrap_or(b.created_at) + Duration::hours(8);
            let monday = (local - Duration::days(i64::from(local.weekday().num_days_from_monday()))).format("%Y-%m-%d").to_string();
            let w = weeks.entry(monday).or_default();
            w.0 += 1;
            if first.auto {
                w.1 += 1;
                if done {
                    w.2 += 1;
                    w.3 += u64::from(b.lead_dept.as_deref() == Some(first.dept.as_str()));
                }
            }
            let overruled = b.dispatches.iter().any(|d| d.decided_by.as_deref() == Some("person") && d.suggested.as_deref().is_some_and(|s| s != d.dept));
            w.4 += u64::from(b.returns > 0 || overruled);
        }
        if let (Some(at), Some(by)) = (b.milestones.replied_at, b.deadlines.reply_by) {
            replied += 1;
            on_time += u64::from(at <= by);
        }
        if t.overdue.any {
            m.overdue.push(OverdueItem { id: t.id, number: t.number.clone(), status: b.status, lead_dept: b.lead_dept.clone(), reply_by: b.deadlines.reply_by });
        }
        if let Some(s) = b.satisfaction {
            called += 1;
            content += u64::from(s != Satisfaction::Unsatisfied);
            bump(
                &mut m.satisfaction_counts,
                match s {
                    Satisfaction::Satisfied => "satisfied",
                    Satisfaction::BasicallySatisfied => "basically_satisfied",
                    Satisfaction::Unsatisfied => "unsatisfied",
                },
            );
        }
        reopened += u64::from(b.reopens > 0);
        if let Some(a) = b.milestones.accepted_at {
            handling.push((a - b.created_at).num_milliseconds() as f64 / 60_000.0);
        }
    }
    m.auto_dispatch_coverage = Rate::new(auto_first, m.dispatched);
    m.auto_dispatch_accuracy = Rate::new(auto_right, auto_judged);
    m.suggestion_accuracy = Rate::new(sug_right, sug_judged);
    m.redispatch_rate = Rate::new(returned, m.dispatched);
    m.sla_on_time = Rate::new(on_time, replied);
    m.callback_satisfaction = Rate::new(content, called);
    m.reopen_rate = Rate::new(reopened, m.tickets);
    handling.sort_by(f64::total_cmp);
    let q = |p: f64| -> Option<f64> { (!handling.is_empty()).then(|| handling[((handling.len() - 1) as f64 * p).round() as usize]) };
    m.handling_minutes_median = q(0.5);
    m.handling_minutes_p90 = q(0.9);
    m.dispatch_by_week = weeks
        .into_iter()
        .map(|(k, (n, auto, judged, right, corrected))| (k, DispatchWeek { dispatched: n, auto, auto_accuracy: Rate::new(right, judged), corrected: Rate::new(corrected, n) }))
        .collect();
    m.overdue.sort_by_key(|o| o.reply_by);
    m.overdue.truncate(200);
    m
}

/// Every ticket matching `filter` (in pages of 500), then [`aggregate`]. At most `max` tickets
/// are read; `truncated` says whether there were more.
pub async fn compute(store: &dyn TicketStore, filter: &TicketFilter, now: DateTime<Utc>, max: usize) -> Result<(SupervisorMetrics, bool), StoreError> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list(filter, PageRequest { limit: 500, cursor }, now).await?;
        all.extend(page.data);
        if all.len() >= max {
            all.truncate(max);
            return Ok((aggregate(&all), true));
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok((aggregate(&all), false))
}
