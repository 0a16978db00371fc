//! # procvisor-actors
//!
//! **procvisor's internal machinery.** It has no stability promise: anything here may change
//! or go in any release, in step with the `procvisor` of the same version and with no regard
//! for anyone else. Users depend on [procvisor](https://docs.rs/procvisor), which re-exports
//! what they need (the supervisor's specs and events, for instance); this crate is published
//! only because procvisor needs it.
//!
//! What runs behind procvisor's handles: the node's [`runtime`] (a small tokio runtime hosting
//! ractor actors, on its own thread), the [`process_supervisor`] that owns a process's
//! children, the dedicated [`spawner`] thread that starts them, the [`bootstrap`] protocol a new
//! child reads before it runs its target, the [`supervisor`] actor (Erlang/OTP supervision
//! trees over OS processes), the OS edge ([`sys`]: pidfds, signals, exit statuses, sibling
//! forks), the [`wire`] format every connection between processes speaks (frames, the codec,
//! HMAC authentication), and the [`shm`] fast path under shared objects (memfd segments,
//! futexes, robust locks).
//!
//! Items are `pub` only where procvisor uses them; everything else is `pub(crate)`. The
//! `unsafe` functions ([`sys::SiblingFork::fork`], the opt-in code inheritance of
//! [`sys::inherit_code::inherit_code`]) are for procvisor's fork server and state their
//! contracts under `# Safety`.

#![warn(missing_docs)]

pub mod bootstrap;
pub mod child;
pub mod fdpass;
pub mod process_supervisor;
pub mod reply;
pub mod runtime;
pub mod shm;
pub mod spawner;
pub mod supervisor;
pub mod sync_util;
pub mod sys;
pub mod wire;
