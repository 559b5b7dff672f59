//! Knowledge base and retrieval. Not built yet: see issue 3.
