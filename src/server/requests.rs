//! Service requests met in the citizen chat become 12345 tickets: the knowledge base
//! recognises a request ([`zhengwu_rag::understand`]) and asks this drafter, backed by the
//! hotline, for the pre-filled form, the suggested department and whether it is a hazard.

use std::sync::Arc;

use serde_json::json;
use zhengwu_hotline::intel::http::IntelService;
use zhengwu_hotline::intel::form::Provenance;
use zhengwu_hotline::tickets::model::{Channel, RequestType};
use zhengwu_rag::answer::{RequestDraft, RequestDrafter};

/// The hotline's form filling, dispatch ranking and hazard word list behind the knowledge
/// base's [`RequestDrafter`] seam.
pub struct HotlineDrafter {
    pub intel: Arc<IntelService>,
}

impl RequestDrafter for HotlineDrafter {
    fn draft(&self, text: &str) -> Result<RequestDraft, String> {
        let (_, mut form) = self.intel.fill_form(text, Channel::App).map_err(|e| e.to_string())?;
        // The chat already read this as something to be handled, not a question: a 咨询 reading
        // of the type model becomes 求助 (the citizen can still change it on the form).
        if form.ticket.request_type == RequestType::Consult {
            form.ticket.request_type = RequestType::Help;
            form.provenance.insert(
                "request_type".into(),
                Provenance { source: "rule", by: "citizen_chat_service_request".into(), evidence: Some("read as a service request, not a question".into()), confidence: None },
            );
        }
        let suggestion = self.intel.dispatcher().and_then(|d| d.suggest(text, &[], &[])).map_err(|e| e.to_string())?;
        // The department the hotline would pick first; the reply calls it a first judgement
        // (系统初判): the agent who dispatches the ticket decides.
        let department = suggestion
            .lead
            .as_ref()
            .map(|c| json!({"id": c.dept, "name": c.name, "confidence": c.confidence, "decided_by": suggestion.decided_by}));
        let hazard = self.intel.tickets.screener.as_ref().and_then(|s| s.hazard(text));
        Ok(RequestDraft {
            form: serde_json::to_value(&form).map_err(|e| e.to_string())?,
            department,
            urgent: hazard.is_some(),
            advice: hazard.map(|h| h.advice.join("")).filter(|a| !a.is_empty()),
        })
    }

    fn is_hazard(&self, text: &str) -> bool {
        self.intel.tickets.screener.as_ref().is_some_and(|s| s.hazard(text).is_some())
    }
}
