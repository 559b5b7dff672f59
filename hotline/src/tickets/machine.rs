//! The ticket state machine: which moves are allowed, what each needs, and what it changes.
//! Pure functions over a [`TicketBody`], shared by every store backend.
//!
//! ```text
//! received ──► accepted ──► dispatched ──► handling ──► replied ──► callback_done ──► closed
//!    │            │            │  ▲           │            │              │             │
//!    │            │            ▼  │           │            │              ▼             │
//!    │            │         returned ◄────────┘            │          reopened ◄────────┘
//!    │            └──────────(direct reply)───────────────►│              │   ▲
//!    └──► closed (not accepted: reason required)            └──────────────┼───┘
//!                                                 reopened ──► dispatched | replied
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::tickets::model::{check_co_handlers, check_dept, check_len, field, FieldError, HistoryEntry, Satisfaction, Status, TicketBody};
use crate::tickets::sla::SlaPolicy;

/// Allowed next states.
pub fn allowed(from: Status) -> &'static [Status] {
    use Status::*;
    match from {
        Received => &[Accepted, Closed],
        Accepted => &[Dispatched, Replied],
        Dispatched => &[Handling, Returned],
        Returned => &[Dispatched],
        Handling => &[Replied, Returned],
        Replied => &[CallbackDone, Reopened],
        CallbackDone => &[Closed, Reopened],
        Closed => &[Reopened],
        Reopened => &[Dispatched, Replied],
    }
}

/// A requested move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    pub to: Status,
    /// Who does it (agent or department user id).
    pub actor: String,
    /// Why: required to return (退单), reopen, and close without accepting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Lead department: required to dispatch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dept: Option<String>,
    /// Co-handling departments on dispatch (replace the current list when given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub co_handlers: Option<Vec<String>>,
    /// The answer to the citizen: required to reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// Required for callback_done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub satisfaction: Option<Satisfaction>,
    /// How the dispatch was decided (only when dispatching); recorded for supervisor metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<crate::tickets::model::DispatchRecord>,
    /// Optimistic concurrency: fail with 409 if the ticket's version differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransitionError {
    #[error("cannot move a ticket from {from} to {to}; allowed from {from}: {}", list(.allowed))]
    NotAllowed { from: &'static str, to: &'static str, allowed: Vec<Status> },
    #[error(transparent)]
    Field(#[from] FieldError),
}

fn list(s: &[Status]) -> String {
    if s.is_empty() {
        return "none".into();
    }
    s.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", ")
}

fn required(param: &str, v: &Option<String>, max: usize) -> Result<String, FieldError> {
    match v.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => {
            check_len(param, s, max)?;
            Ok(s.to_string())
        }
        _ => Err(field(param, "required for this transition")),
    }
}

/// Validate `req` against `body` and apply it: the new body and the history entry to append
/// (its `seq` is filled by the store).
pub fn apply(
    body: &TicketBody,
    req: &TransitionRequest,
    now: DateTime<Utc>,
    sla: &SlaPolicy,
) -> Result<(TicketBody, HistoryEntry), TransitionError> {
    use Status::*;
    check_dept("actor", &req.actor)?;
    let from = body.status;
    let to = req.to;
    if !allowed(from).contains(&to) {
        return Err(TransitionError::NotAllowed { from: from.as_str(), to: to.as_str(), allowed: allowed(from).to_vec() });
    }
    if let Some(r) = &req.reason {
        check_len("reason", r, 2000)?;
    }
    let mut b = body.clone();
    let mut reason = req.reason.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    let mut dept = None;
    match to {
        Accepted => {
            b.milestones.accepted_at = Some(now);
        }
        Closed if from == Received => {
            reason = Some(required("reason", &req.reason, 2000)?);
            b.milestones.closed_at = Some(now);
        }
        Closed => {
            b.milestones.closed_at = Some(now);
        }
        Dispatched => {
            let d = required("dept", &req.dept, 64)?;
            if let Some(co) = &req.co_handlers {
                check_co_handlers(co, Some(&d))?;
                b.co_handlers = co.clone();
            } else {
                b.co_handlers.retain(|c| c != &d);
            }
            b.lead_dept = Some(d.clone());
            let mut rec = req.dispatch.clone().unwrap_or(crate::tickets::model::DispatchRecord {
                at: None,
                dept: String::new(),
                auto: false,
                bucket: None,
                suggested: None,
                confidence: None,
                decided_by: Some("person".into()),
            });
            if let Some(c) = rec.confidence {
                if !(0.0..=1.0).contains(&c) {
                    return Err(field("dispatch.confidence", "must be within 0..1").into());
                }
            }
            rec.at = Some(now);
            rec.dept = d.clone();
            b.dispatches.push(rec);
            dept = Some(d);
        }
        Returned => {
            reason = Some(required("reason", &req.reason, 2000)?);
            dept = b.lead_dept.clone();
            b.returns += 1;
        }
        Handling => {
            dept = b.lead_dept.clone();
        }
        Replied => {
            b.reply = Some(required("reply", &req.reply, 5000)?);
            b.milestones.replied_at = Some(now);
            b.deadlines.callback_by = Some(sla.callback_by(now));
            // A direct reply from the hotline counts as accepted work too.
            dept = b.lead_dept.clone();
        }
        CallbackDone => {
            let Some(s) = req.satisfaction else {
                return Err(field("satisfaction", "required for callback_done: satisfied, basically_satisfied or unsatisfied").into());
            };
            b.satisfaction = Some(s);
            b.milestones.callback_at = Some(now);
        }
        Reopened => {
            reason = Some(required("reason", &req.reason, 2000)?);
            b.reopens += 1;
            // New handling round: fresh reply deadline from now; old reply and callback cleared.
            b.deadlines.reply_by = Some(sla.reply_by(b.request_type, b.urgency, now));
            b.deadlines.callback_by = None;
            b.milestones.replied_at = None;
            b.milestones.callback_at = None;
            b.milestones.closed_at = None;
            b.reply = None;
            b.satisfaction = None;
        }
        Received => unreachable!("no transition leads back to received"),
    }
    if to != Dispatched && req.dispatch.is_some() {
        return Err(field("dispatch", "only allowed when dispatching").into());
    }
    if to != Dispatched && req.co_handlers.is_some() {
        return Err(field("co_handlers", "only allowed when dispatching").into());
    }
    b.status = to;
    b.updated_at = now;
    let entry = HistoryEntry { seq: 0, at: now, actor: req.actor.trim().to_string(), from: Some(from), to, reason, dept };
    Ok((b, entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tickets::model::*;

    fn body() -> TicketBody {
        let now = Utc::now();
        TicketBody {
            channel: Channel::Phone,
            contact: Contact::default(),
            address: Address::default(),
            request_type: RequestType::Complaint,
            category: vec![],
            summary: "楼下烧烤店油烟".into(),
            text: String::new(),
            transcript_ref: None,
            urgency: Urgency::Normal,
            lead_dept: None,
            co_handlers: vec![],
            status: Status::Received,
            created_at: now,
            updated_at: now,
            deadlines: SlaPolicy::default().on_create(RequestType::Complaint, Urgency::Normal, now),
            milestones: Milestones::default(),
            reply: None,
            satisfaction: None,
            flags: vec![],
            returns: 0,
            reopens: 0,
            dispatches: Vec::new(),
        }
    }

    fn req(to: Status) -> TransitionRequest {
        TransitionRequest {
            to,
            actor: "agent-7".into(),
            reason: None,
            dept: None,
            co_handlers: None,
            reply: None,
            satisfaction: None,
            dispatch: None,
            expected_version: None,
        }
    }

    #[test]
    fn full_lifecycle_with_return_and_reopen() {
        let sla = SlaPolicy::default();
        let now = Utc::now();
        let mut b = body();
        let steps = vec![
            TransitionRequest { ..req(Status::Accepted) },
            TransitionRequest { dept: Some("城市管理局".into()), co_handlers: Some(vec!["生态环境局".into()]), ..req(Status::Dispatched) },
            TransitionRequest { reason: Some("不属于本单位职责".into()), ..req(Status::Returned) },
            TransitionRequest { dept: Some("生态环境局".into()), ..req(Status::Dispatched) },
            req(Status::Handling),
            TransitionRequest { reply: Some("已责令整改".into()), ..req(Status::Replied) },
            TransitionRequest { satisfaction: Some(Satisfaction::Unsatisfied), ..req(Status::CallbackDone) },
            TransitionRequest { reason: Some("油烟仍在".into()), ..req(Status::Reopened) },
            TransitionRequest { dept: Some("生态环境局".into()), ..req(Status::Dispatched) },
            req(Status::Handling),
            TransitionRequest { reply: Some("已安装净化器".into()), ..req(Status::Replied) },
            TransitionRequest { satisfaction: Some(Satisfaction::Satisfied), ..req(Status::CallbackDone) },
            req(Status::Closed),
        ];
        for r in steps {
            let (nb, e) = apply(&b, &r, now, &sla).unwrap_or_else(|e| panic!("{:?} -> {:?}: {e}", b.status, r.to));
            assert_eq!(e.from, Some(b.status));
            assert_eq!(e.to, r.to);
            b = nb;
        }
        assert_eq!(b.status, Status::Closed);
        assert_eq!(b.lead_dept.as_deref(), Some("生态环境局"));
        assert_eq!(b.co_handlers, Vec::<String>::new(), "the new lead is not also a co-handler");
        assert_eq!((b.returns, b.reopens), (1, 1));
        assert_eq!(b.satisfaction, Some(Satisfaction::Satisfied));
        assert!(b.milestones.closed_at.is_some() && b.deadlines.callback_by.is_some());
    }

    #[test]
    fn invalid_moves_list_the_allowed_ones() {
        let sla = SlaPolicy::default();
        let b = body();
        let e = apply(&b, &req(Status::Replied), Utc::now(), &sla).unwrap_err();
        match &e {
            TransitionError::NotAllowed { from, to, allowed } => {
                assert_eq!((*from, *to), ("received", "replied"));
                assert_eq!(allowed, &vec![Status::Accepted, Status::Closed]);
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("accepted, closed"), "{e}");
        // Every state: moving to a state not in its list fails; nothing moves back to received.
        for from in Status::ALL {
            let mut b = body();
            b.status = from;
            for to in Status::ALL {
                let r = TransitionRequest {
                    reason: Some("r".into()),
                    dept: Some("d".into()),
                    reply: Some("ok".into()),
                    satisfaction: Some(Satisfaction::Satisfied),
                    ..req(to)
                };
                let ok = apply(&b, &r, Utc::now(), &sla).is_ok();
                assert_eq!(ok, allowed(from).contains(&to), "{from:?} -> {to:?}");
            }
            assert!(!allowed(from).contains(&Status::Received));
        }
    }

    #[test]
    fn moves_check_their_fields() {
        let sla = SlaPolicy::default();
        let mut b = body();
        let now = Utc::now();
        let e = apply(&b, &req(Status::Closed), now, &sla).unwrap_err();
        assert!(matches!(&e, TransitionError::Field(f) if f.param == "reason"), "{e}");
        b.status = Status::Accepted;
        let e = apply(&b, &req(Status::Dispatched), now, &sla).unwrap_err();
        assert!(matches!(&e, TransitionError::Field(f) if f.param == "dept"), "{e}");
        let e = apply(
            &b,
            &TransitionRequest { dept: Some("A".into()), co_handlers: Some(vec!["A".into()]), ..req(Status::Dispatched) },
            now,
            &sla,
        )
        .unwrap_err();
        assert!(matches!(&e, TransitionError::Field(f) if f.param == "co_handlers"), "{e}");
        let e = apply(&b, &TransitionRequest { actor: " ".into(), ..req(Status::Replied) }, now, &sla).unwrap_err();
        assert!(matches!(&e, TransitionError::Field(f) if f.param == "actor"), "{e}");
        let e = apply(&b, &req(Status::Replied), now, &sla).unwrap_err();
        assert!(matches!(&e, TransitionError::Field(f) if f.param == "reply"), "{e}");
        b.status = Status::Replied;
        let e = apply(&b, &req(Status::CallbackDone), now, &sla).unwrap_err();
        assert!(matches!(&e, TransitionError::Field(f) if f.param == "satisfaction"), "{e}");
        let e = apply(&b, &TransitionRequest { co_handlers: Some(vec![]), ..req(Status::Reopened) }, now, &sla).unwrap_err();
        assert!(matches!(&e, TransitionError::Field(_)), "{e}");
    }

    #[test]
    fn reopen_restarts_the_reply_clock() {
        let sla = SlaPolicy::default();
        let mut b = body();
        b.status = Status::Closed;
        b.milestones.replied_at = Some(b.created_at);
        let later = b.created_at + chrono::Duration::days(30);
        let (nb, e) = apply(&b, &TransitionRequest { reason: Some("问题复发".into()), ..req(Status::Reopened) }, later, &sla).unwrap();
        assert_eq!(nb.milestones.replied_at, None);
        assert_eq!(nb.deadlines.reply_by, Some(sla.reply_by(RequestType::Complaint, Urgency::Normal, later)));
        assert_eq!(e.reason.as_deref(), Some("问题复发"));
    }
}
