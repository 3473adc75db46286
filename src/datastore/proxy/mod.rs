//! Datastore decorators: each implements the port over another datastore,
//! so concerns such as metering stack around any engine in one place
//! (`cli`/`server`) instead of living inside the engines.

pub mod metered;

pub use metered::Metered;
