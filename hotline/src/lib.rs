//! Hotline core and intelligence. Not built yet: see issues 4 and 5.

pub mod asr;
pub mod redact;
pub mod sensitive;
pub mod tickets;
