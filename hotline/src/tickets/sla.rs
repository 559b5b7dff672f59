//! SLA deadlines: per request type in working days (weekends and configured holidays skipped,
//! configured make-up working days counted), per urgency in calendar hours, all in local time
//! (UTC+8 by default).
//!
//! Rule: "N working days" ends at 24:00 local time of the N-th working day after the day the
//! clock starts (a ticket recorded on Friday with 1 working day is due at the end of Monday).
//! `urgent`/`critical` tickets use calendar hours instead (danger does not wait for Monday).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc, Weekday};
use serde::{Deserialize, Serialize};

use crate::tickets::model::{Deadlines, Milestones, Overdue, RequestType, Urgency};

/// `[tickets.sla]` in zhengwu.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlaConfig {
    /// Local time zone as an offset from UTC (China: 8).
    pub utc_offset_hours: i32,
    /// Hours (calendar) to accept a received ticket.
    pub accept_hours: u32,
    /// Working days to reply, per request type (`consult`, `help`, `complaint`, `report`, `suggestion`).
    pub reply_working_days: BTreeMap<RequestType, u32>,
    /// Calendar hours to reply for `urgent` tickets.
    pub urgent_reply_hours: u32,
    /// Calendar hours to reply for `critical` tickets.
    pub critical_reply_hours: u32,
    /// Working days after the reply to call the citizen back (回访).
    pub callback_working_days: u32,
    /// Public holidays (no work), `YYYY-MM-DD`.
    pub holidays: Vec<NaiveDate>,
    /// Weekend days that are working days (调休), `YYYY-MM-DD`.
    pub workdays: Vec<NaiveDate>,
}

impl Default for SlaConfig {
    fn default() -> Self {
        Self {
            utc_offset_hours: 8,
            accept_hours: 2,
            reply_working_days: BTreeMap::from([
                (RequestType::Consult, 1),
                (RequestType::Help, 3),
                (RequestType::Complaint, 5),
                (RequestType::Report, 10),
                (RequestType::Suggestion, 10),
            ]),
            urgent_reply_hours: 24,
            critical_reply_hours: 2,
            callback_working_days: 2,
            holidays: Vec::new(),
            workdays: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SlaPolicy {
    cfg: SlaConfig,
    tz: FixedOffset,
    holidays: BTreeSet<NaiveDate>,
    workdays: BTreeSet<NaiveDate>,
}

impl Default for SlaPolicy {
    fn default() -> Self {
        Self::new(SlaConfig::default()).expect("default SLA config is valid")
    }
}

impl SlaPolicy {
    pub fn new(cfg: SlaConfig) -> Result<Self, String> {
        let tz = FixedOffset::east_opt(cfg.utc_offset_hours * 3600)
            .ok_or_else(|| format!("utc_offset_hours {} out of range", cfg.utc_offset_hours))?;
        if let Some(d) = cfg.holidays.iter().find(|d| cfg.workdays.contains(d)) {
            return Err(format!("{d} is listed both as a holiday and as a working day"));
        }
        Ok(Self {
            holidays: cfg.holidays.iter().copied().collect(),
            workdays: cfg.workdays.iter().copied().collect(),
            tz,
            cfg,
        })
    }

    pub fn config(&self) -> &SlaConfig {
        &self.cfg
    }

    pub fn is_working_day(&self, d: NaiveDate) -> bool {
        if self.workdays.contains(&d) {
            return true;
        }
        if self.holidays.contains(&d) {
            return false;
        }
        !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
    }

    /// End (24:00 local) of the `n`-th working day after `start`'s local date; `n = 0`: end of
    /// that day, or of the next working day if it is not one.
    pub fn add_working_days(&self, start: DateTime<Utc>, n: u32) -> DateTime<Utc> {
        let mut date = start.with_timezone(&self.tz).date_naive();
        let mut left = n;
        if n == 0 {
            while !self.is_working_day(date) {
                date = date.succ_opt().expect("date in range");
            }
        }
        while left > 0 {
            date = date.succ_opt().expect("date in range");
            if self.is_working_day(date) {
                left -= 1;
            }
        }
        let next_midnight = date.succ_opt().expect("date in range").and_hms_opt(0, 0, 0).expect("midnight");
        self.tz.from_local_datetime(&next_midnight).single().expect("fixed offset is unambiguous").with_timezone(&Utc)
    }

    /// Reply deadline for a ticket whose clock starts at `start`.
    pub fn reply_by(&self, request_type: RequestType, urgency: Urgency, start: DateTime<Utc>) -> DateTime<Utc> {
        match urgency {
            Urgency::Critical => start + Duration::hours(self.cfg.critical_reply_hours as i64),
            Urgency::Urgent => start + Duration::hours(self.cfg.urgent_reply_hours as i64),
            Urgency::Normal => {
                let days = self.cfg.reply_working_days.get(&request_type).copied().unwrap_or(5);
                self.add_working_days(start, days)
            }
        }
    }

    /// Deadlines at intake.
    pub fn on_create(&self, request_type: RequestType, urgency: Urgency, now: DateTime<Utc>) -> Deadlines {
        Deadlines {
            accept_by: Some(now + Duration::hours(self.cfg.accept_hours as i64)),
            reply_by: Some(self.reply_by(request_type, urgency, now)),
            callback_by: None,
        }
    }

    pub fn callback_by(&self, replied_at: DateTime<Utc>) -> DateTime<Utc> {
        self.add_working_days(replied_at, self.cfg.callback_working_days)
    }
}

/// Overdue flags: a milestone reached after its deadline, or not reached and the deadline past.
pub fn overdue(d: &Deadlines, m: &Milestones, now: DateTime<Utc>) -> Overdue {
    let late = |by: Option<DateTime<Utc>>, at: Option<DateTime<Utc>>| match (by, at) {
        (Some(by), Some(at)) => at > by,
        (Some(by), None) => now > by,
        (None, _) => false,
    };
    let accept = late(d.accept_by, m.accepted_at);
    let reply = late(d.reply_by, m.replied_at);
    let callback = late(d.callback_by, m.callback_at);
    Overdue { accept, reply, callback, any: accept || reply || callback }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(s: &str) -> DateTime<Utc> {
        // s = "2026-10-09 10:00" in UTC+8
        let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        FixedOffset::east_opt(8 * 3600).unwrap().from_local_datetime(&naive).unwrap().with_timezone(&Utc)
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn working_days_skip_weekends() {
        let p = SlaPolicy::default();
        // 2026-11-27 is a Friday.
        assert_eq!(d("2026-11-27").weekday(), Weekday::Fri);
        assert_eq!(p.add_working_days(local("2026-11-27 10:00"), 1), local("2026-12-01 00:00"), "Friday + 1 = end of Monday");
        assert_eq!(p.add_working_days(local("2026-11-27 10:00"), 5), local("2026-12-05 00:00"), "Friday + 5 = end of next Friday");
        // Saturday intake: the clock runs from Monday.
        assert_eq!(p.add_working_days(local("2026-11-28 23:30"), 1), local("2026-12-01 00:00"));
        assert_eq!(p.add_working_days(local("2026-11-28 09:00"), 0), local("2026-12-01 00:00"), "n=0 on Saturday = end of Monday");
        // Local date, not UTC date: 2026-11-30 01:00 local is still 2026-11-29 in UTC.
        assert_eq!(p.add_working_days(local("2026-11-30 01:00"), 1), local("2026-12-02 00:00"));
    }

    #[test]
    fn holidays_and_makeup_days() {
        let cfg = SlaConfig {
            holidays: vec![d("2026-10-01"), d("2026-10-02"), d("2026-10-05"), d("2026-10-06"), d("2026-10-07")],
            workdays: vec![d("2026-10-10")], // a Saturday worked
            ..Default::default()
        };
        let p = SlaPolicy::new(cfg).unwrap();
        assert!(!p.is_working_day(d("2026-10-01")));
        assert!(p.is_working_day(d("2026-10-10")));
        // Wed 30 Sep + 1 working day: 1 Oct (holiday), 2 (holiday), 3-4 weekend, 5-7 holidays → Thu 8 Oct.
        assert_eq!(p.add_working_days(local("2026-09-30 15:00"), 1), local("2026-10-09 00:00"));
        // Fri 9 Oct + 1 → Sat 10 Oct (make-up day).
        assert_eq!(p.add_working_days(local("2026-10-09 15:00"), 1), local("2026-10-11 00:00"));
        assert!(SlaPolicy::new(SlaConfig { holidays: vec![d("2026-10-10")], workdays: vec![d("2026-10-10")], ..Default::default() }).is_err());
    }

    #[test]
    fn per_type_and_urgency() {
        let p = SlaPolicy::default();
        let t = local("2026-11-23 10:00"); // Monday
        assert_eq!(p.reply_by(RequestType::Consult, Urgency::Normal, t), local("2026-11-25 00:00"));
        assert_eq!(p.reply_by(RequestType::Complaint, Urgency::Normal, t), local("2026-12-01 00:00"));
        assert_eq!(p.reply_by(RequestType::Complaint, Urgency::Urgent, t), t + Duration::hours(24));
        assert_eq!(p.reply_by(RequestType::Help, Urgency::Critical, t), t + Duration::hours(2));
        let dl = p.on_create(RequestType::Help, Urgency::Normal, t);
        assert_eq!(dl.accept_by, Some(t + Duration::hours(2)));
        assert_eq!(dl.reply_by, Some(local("2026-11-27 00:00")));
    }

    #[test]
    fn overdue_flags() {
        let p = SlaPolicy::default();
        let t = local("2026-11-23 10:00");
        let dl = p.on_create(RequestType::Consult, Urgency::Normal, t);
        let mut m = Milestones::default();
        assert!(!overdue(&dl, &m, t + Duration::hours(1)).any);
        let o = overdue(&dl, &m, t + Duration::hours(3));
        assert!(o.accept && !o.reply && o.any);
        m.accepted_at = Some(t + Duration::minutes(30));
        assert!(!overdue(&dl, &m, t + Duration::hours(3)).accept, "accepted in time stays on time");
        assert!(overdue(&dl, &m, local("2026-11-25 00:01")).reply);
        m.replied_at = Some(local("2026-11-24 18:00"));
        assert!(!overdue(&dl, &m, local("2026-12-25 00:00")).reply, "replied in time");
    }
}
