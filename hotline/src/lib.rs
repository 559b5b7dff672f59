//! The 12345 hotline: tickets and their lifecycle, call transcription, redaction and sensitive
//! words; classification, dispatch, callback quality, hot spots and supervisor metrics
//! ([`intel`]).

pub mod asr;
pub mod blocking;
pub mod intel;
pub mod redact;
pub mod sensitive;
pub mod tickets;
