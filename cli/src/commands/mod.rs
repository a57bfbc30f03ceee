//! The commands, one module per concern; each prints its result and leaves exit codes to
//! `errors`.

pub(crate) mod account;
pub(crate) mod app;
pub(crate) mod bundle;
pub(crate) mod forms;
pub(crate) mod records;
pub(crate) mod sync;
