//! Hotline core and intelligence. Not built yet: see issues 4 and 5.
