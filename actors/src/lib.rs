//! # procvisor-actors
//!
//! The machinery behind [procvisor](https://docs.rs/procvisor)'s handles: the per-process
//! [`runtime`] (a small tokio runtime hosting ractor actors), the [`process_supervisor`] actor that
//! owns a process's children, the dedicated [`spawner`] thread that starts them, the
//! [`bootstrap`] protocol a new child reads before it runs its target, the [`supervisor`] actor
//! (Erlang/OTP supervision trees over OS processes), and the OS edge
//! ([`sys`]: pidfds, signals, exit statuses), and the [`wire`] format every connection between
//! processes speaks (frames, the codec, HMAC authentication), and the [`shm`] fast path under shared objects
//! (memfd segments, futexes, robust locks).
//!
//! Users normally depend on `procvisor`, which re-exports what they need; this crate is public
//! so that tools and tests can speak the protocols directly.

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
