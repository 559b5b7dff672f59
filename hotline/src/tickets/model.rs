//! The ticket (工单) and its parts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::redact;
use crate::tickets::taxonomy::Taxonomy;

/// Where the request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    #[serde(alias = "电话")]
    Phone,
    #[serde(alias = "APP")]
    App,
    #[serde(alias = "网站")]
    Web,
    #[serde(alias = "小程序")]
    MiniProgram,
    #[serde(alias = "信件")]
    Letter,
}

/// 诉求类型.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestType {
    /// 咨询
    #[serde(alias = "咨询")]
    Consult,
    /// 求助
    #[serde(alias = "求助")]
    Help,
    /// 投诉
    #[serde(alias = "投诉")]
    Complaint,
    /// 举报
    #[serde(alias = "举报")]
    Report,
    /// 建议
    #[serde(alias = "建议")]
    Suggestion,
}

/// Ordered by how soon someone must act (Normal < Urgent < Critical).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    #[default]
    #[serde(alias = "一般")]
    Normal,
    #[serde(alias = "紧急")]
    Urgent,
    /// Danger to life or property: calendar hours, not working days.
    #[serde(alias = "特急")]
    Critical,
}

/// Lifecycle state. See [`crate::tickets::machine`] for the allowed moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// 登记: recorded, not yet accepted.
    Received,
    /// 受理
    Accepted,
    /// 派发: sent to the lead department.
    Dispatched,
    /// 退单: the department sent it back; to be re-dispatched.
    Returned,
    /// 办理中: the department signed for it.
    Handling,
    /// 办结答复
    Replied,
    /// 回访完成
    CallbackDone,
    /// 归档
    Closed,
    /// 重办
    Reopened,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::Received,
        Status::Accepted,
        Status::Dispatched,
        Status::Returned,
        Status::Handling,
        Status::Replied,
        Status::CallbackDone,
        Status::Closed,
        Status::Reopened,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Received => "received",
            Status::Accepted => "accepted",
            Status::Dispatched => "dispatched",
            Status::Returned => "returned",
            Status::Handling => "handling",
            Status::Replied => "replied",
            Status::CallbackDone => "callback_done",
            Status::Closed => "closed",
            Status::Reopened => "reopened",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl RequestType {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Consult => "consult",
            RequestType::Help => "help",
            RequestType::Complaint => "complaint",
            RequestType::Report => "report",
            RequestType::Suggestion => "suggestion",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            RequestType::Consult => "咨询",
            RequestType::Help => "求助",
            RequestType::Complaint => "投诉",
            RequestType::Report => "举报",
            RequestType::Suggestion => "建议",
        }
    }
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Phone => "phone",
            Channel::App => "app",
            Channel::Web => "web",
            Channel::MiniProgram => "mini_program",
            Channel::Letter => "letter",
        }
    }
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Normal => "normal",
            Urgency::Urgent => "urgent",
            Urgency::Critical => "critical",
        }
    }
}

/// Citizen contact details: personal data, masked for anyone but authorised agents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The citizen asked not to be identified to the handling department.
    #[serde(default)]
    pub anonymous: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    /// Free text as given: 幸福路12号3单元.
    #[serde(default)]
    pub text: String,
    /// 区/县
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub district: Option<String>,
    /// 街道/乡镇
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
}

/// What the intake agent (or the form filler) submits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTicket {
    pub channel: Channel,
    #[serde(default)]
    pub contact: Contact,
    #[serde(default)]
    pub address: Address,
    pub request_type: RequestType,
    /// Path in the taxonomy, 1–3 levels: `["城乡建设", "物业管理", "电梯故障停运"]`.
    #[serde(default)]
    pub category: Vec<String>,
    pub summary: String,
    #[serde(default)]
    pub text: String,
    /// Reference to a stored call recording / transcript.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript_ref: Option<String>,
    #[serde(default)]
    pub urgency: Urgency,
    /// 主办单位 (may be set later by dispatch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_dept: Option<String>,
    /// 协办单位
    #[serde(default)]
    pub co_handlers: Vec<String>,
    /// Who records it (agent id); defaults to `system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// A validation failure: the field and a message that never echoes personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct FieldError {
    pub param: String,
    pub message: String,
}

pub(crate) fn field(param: &str, message: impl Into<String>) -> FieldError {
    FieldError { param: param.to_string(), message: message.into() }
}

pub(crate) fn check_len(param: &str, s: &str, max: usize) -> Result<(), FieldError> {
    let n = s.chars().count();
    if n > max {
        return Err(field(param, format!("too long: {n} characters, at most {max}")));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t') {
        return Err(field(param, "contains control characters"));
    }
    Ok(())
}

pub(crate) fn check_dept(param: &str, s: &str) -> Result<(), FieldError> {
    if s.trim().is_empty() {
        return Err(field(param, "must not be empty"));
    }
    check_len(param, s, 64)
}

impl NewTicket {
    /// Check every field; the first problem is returned.
    pub fn validate(&self, taxonomy: Option<&Taxonomy>) -> Result<(), FieldError> {
        if self.summary.trim().is_empty() {
            return Err(field("summary", "must not be empty"));
        }
        check_len("summary", &self.summary, 500)?;
        check_len("text", &self.text, 20_000)?;
        let c = &self.contact;
        if let Some(name) = &c.name {
            check_len("contact.name", name, 64)?;
        }
        if let Some(phone) = &c.phone {
            if !redact::is_phone(phone) {
                return Err(field("contact.phone", "not a mainland mobile (11 digits, 1[3-9]…) or landline with area code (0XX-XXXXXXXX)"));
            }
        }
        if let Some(id) = &c.id_number {
            if !redact::is_resident_id(id.trim()) {
                return Err(field("contact.id_number", "not a valid resident ID number (18 characters, GB 11643 check digit)"));
            }
        }
        if let Some(email) = &c.email {
            let e = email.trim();
            let ok = e.len() <= 254
                && e.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.'))
                && !e.chars().any(char::is_whitespace);
            if !ok {
                return Err(field("contact.email", "not an e-mail address"));
            }
        }
        check_len("address.text", &self.address.text, 200)?;
        for (p, v) in [("address.district", &self.address.district), ("address.street", &self.address.street)] {
            if let Some(v) = v {
                check_dept(p, v)?;
            }
        }
        if self.category.len() > 3 {
            return Err(field("category", "at most 3 levels"));
        }
        if self.category.iter().any(|c| c.trim().is_empty()) {
            return Err(field("category", "levels must not be empty"));
        }
        if let (Some(t), false) = (taxonomy, self.category.is_empty()) {
            t.check(&self.category).map_err(|m| field("category", m))?;
        }
        if let Some(t) = &self.transcript_ref {
            check_len("transcript_ref", t, 256)?;
        }
        if let Some(d) = &self.lead_dept {
            check_dept("lead_dept", d)?;
        }
        check_co_handlers(&self.co_handlers, self.lead_dept.as_deref())?;
        if let Some(a) = &self.actor {
            check_dept("actor", a)?;
        }
        Ok(())
    }
}

pub(crate) fn check_co_handlers(list: &[String], lead: Option<&str>) -> Result<(), FieldError> {
    if list.len() > 10 {
        return Err(field("co_handlers", "at most 10 departments"));
    }
    for (i, d) in list.iter().enumerate() {
        check_dept("co_handlers", d)?;
        if list[..i].contains(d) {
            return Err(field("co_handlers", format!("{d} is listed twice")));
        }
        if Some(d.as_str()) == lead {
            return Err(field("co_handlers", format!("{d} is already the lead department")));
        }
    }
    Ok(())
}

/// SLA deadlines (UTC).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deadlines {
    pub accept_by: Option<DateTime<Utc>>,
    pub reply_by: Option<DateTime<Utc>>,
    pub callback_by: Option<DateTime<Utc>>,
}

/// When milestones were reached.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Milestones {
    pub accepted_at: Option<DateTime<Utc>>,
    pub replied_at: Option<DateTime<Utc>>,
    pub callback_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// Whether a deadline was (or is being) missed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overdue {
    pub accept: bool,
    pub reply: bool,
    pub callback: bool,
    pub any: bool,
}

/// The citizen's verdict at callback (回访).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Satisfaction {
    #[serde(alias = "满意")]
    Satisfied,
    #[serde(alias = "基本满意")]
    BasicallySatisfied,
    #[serde(alias = "不满意")]
    Unsatisfied,
}

/// One append-only history entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// 1 for the creation, then one per transition; equals the ticket's version after it.
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    /// `None` for the creation.
    pub from: Option<Status>,
    pub to: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Department involved (dispatch, return).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dept: Option<String>,
}

/// Everything about a ticket except its id, version and history (stored as one JSON document
/// beside the indexed columns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketBody {
    pub channel: Channel,
    pub contact: Contact,
    pub address: Address,
    pub request_type: RequestType,
    pub category: Vec<String>,
    pub summary: String,
    pub text: String,
    pub transcript_ref: Option<String>,
    pub urgency: Urgency,
    pub lead_dept: Option<String>,
    pub co_handlers: Vec<String>,
    pub status: Status,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deadlines: Deadlines,
    pub milestones: Milestones,
    #[serde(default)]
    pub reply: Option<String>,
    #[serde(default)]
    pub satisfaction: Option<Satisfaction>,
    /// Sensitive-word categories flagged on intake (e.g. `self_harm`).
    #[serde(default)]
    pub flags: Vec<String>,
    /// Times a department returned it (退单).
    #[serde(default)]
    pub returns: u32,
    /// Times it was reopened (重办).
    #[serde(default)]
    pub reopens: u32,
    /// Every dispatch decision, oldest first (who or what chose the department, and how sure).
    #[serde(default)]
    pub dispatches: Vec<DispatchRecord>,
}

/// How one dispatch was decided: by the dispatcher on its own (`auto`), or by a person, with the
/// dispatcher's suggestion kept for measuring its accuracy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchRecord {
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    /// Department it was dispatched to (filled from the transition).
    #[serde(default)]
    pub dept: String,
    /// Dispatched without a person's decision.
    pub auto: bool,
    /// The dispatcher's bucket: `auto`, `review`, `human`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// The dispatcher's suggested lead department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggested: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
    /// Which layer decided: `rule`, `model`, `keywords`, `person`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
}

/// A stored ticket as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: i64,
    /// Human-facing number: `YYYYMMDD` + 6-digit id.
    pub number: String,
    pub version: i64,
    #[serde(flatten)]
    pub body: TicketBody,
    /// Filled by the store's `get`; empty in lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// Computed at read time against the current clock.
    #[serde(default)]
    pub overdue: Overdue,
}

pub fn ticket_number(id: i64, created_at: DateTime<Utc>) -> String {
    let local = created_at + chrono::Duration::hours(8);
    format!("{}{:06}", local.format("%Y%m%d"), id)
}

impl Ticket {
    /// A copy safe for callers without the agent key: contact masked, PII in free text masked.
    pub fn masked(&self) -> Ticket {
        let mut t = self.clone();
        let c = &mut t.body.contact;
        c.name = c.name.as_deref().map(redact::mask_name);
        c.phone = c.phone.as_deref().map(redact::mask);
        c.id_number = c.id_number.as_deref().map(|s| redact::mask_item(redact::PiiKind::IdNumber, s));
        c.email = c.email.as_deref().map(|s| redact::mask_item(redact::PiiKind::Email, s));
        t.body.summary = redact::mask(&t.body.summary);
        t.body.text = redact::mask(&t.body.text);
        t.body.address.text = redact::mask(&t.body.address.text);
        t.body.reply = t.body.reply.as_deref().map(redact::mask);
        for h in &mut t.history {
            h.reason = h.reason.as_deref().map(redact::mask);
        }
        t
    }

    /// Text the search index holds.
    pub fn search_text(body: &TicketBody) -> String {
        let mut s = String::new();
        for part in [&body.summary, &body.text, &body.address.text] {
            s.push_str(part);
            s.push('\n');
        }
        s.push_str(&body.category.join(" "));
        s
    }
}
