//! The 12345 hotline: tickets and their lifecycle, call transcription, redaction and sensitive
//! words (issue 4); classification, dispatch, callback quality, hot spots and supervisor metrics
//! (issue 5, [`intel`]).

pub mod asr;
pub mod blocking;
pub mod intel;
pub mod redact;
pub mod sensitive;
pub mod tickets;
