//! Child specs that travel to a supervisor in another process — one running this same
//! executable, started by procvisor — and back.
//!
//! The start of a [`ChildSpec::worker`](super::ChildSpec::worker),
//! [`template`](super::ChildSpec::template) or
//! [`supervisor_process`](super::ChildSpec::supervisor_process) spec is a zero-sized function
//! type plus serde arguments, like a process target, so it crosses the way a target does: as a
//! [`CodeRef`] to a maker function monomorphized for that type, and the encoded arguments. The
//! receiving process follows the reference and calls the maker, which decodes the arguments
//! and builds the start. The bytes of a [`PortableStart`]: the wire encoding of
//! `(CodeRef<MakeFn>, ready: Option<Duration>, args: Vec<u8>)`.
//!
//! Trust: a `CodeRef` is as trustworthy as the channel it came over (see `code_ref.rs`); these
//! come over supervision links only, socket pairs between a process and a child it started
//! from this executable. Bytes that do not decode, or a reference made by another executable,
//! are an error, never a panic.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use procvisor_actors::supervisor::{
    self as actors, ExtraType, PortableStart, StartChild, WireSpec,
};
use procvisor_actors::wire;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::worker::{FnTarget, ProcessChild, TemplateTarget, conjure};
use crate::code_ref::CodeRef;
use crate::process::Target;

/// What a maker gets: the child's id, its encoded arguments, its readiness timeout.
pub(crate) struct MakeInput<'a> {
    pub(crate) id: &'a str,
    pub(crate) args: &'a [u8],
    pub(crate) ready: Option<Duration>,
}

/// What a maker builds: the start, and the extra-argument type of a template.
pub(crate) struct Made {
    pub(crate) start: Arc<dyn StartChild>,
    pub(crate) extra: Option<ExtraType>,
}

/// A maker: rebuilds a start in this process.
pub(crate) type MakeFn = fn(MakeInput<'_>) -> Result<Made, String>;

crate::code_ref::fn_pointer!(MakeFn);

/// How a spec's start crosses.
#[derive(Clone)]
pub(crate) enum Portable {
    /// A start made here: its maker and its arguments (encoded when needed).
    Made {
        make: MakeFn,
        args: Arc<dyn Fn() -> Result<Vec<u8>, String> + Send + Sync>,
    },
    /// A start read back from a running supervisor (`child_spec`): its encoder, as it was.
    Encoded(actors::EncodeStart),
}

impl Portable {
    /// The portable start of `worker(id, F, args)`.
    pub(crate) fn worker<F, Args>(args: Args) -> Portable
    where
        F: Target<Args> + Copy,
        Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        Portable::with_args(make_worker::<F, Args>, args)
    }

    /// The portable start of `template(id, F)`.
    pub(crate) fn template<F, E>() -> Portable
    where
        F: Target<E> + Copy,
        E: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        Portable::with_args(make_template::<F, E>, ())
    }

    /// The portable start rebuilt by `make` from `args` (`remote.rs` makes supervisor
    /// processes' this way).
    pub(crate) fn with_args<A: Serialize + Send + Sync + 'static>(
        make: MakeFn,
        args: A,
    ) -> Portable {
        Portable::Made {
            make,
            args: Arc::new(move || {
                wire::encode(&args).map_err(|e| format!("cannot encode its arguments: {e}"))
            }),
        }
    }

    /// The encoder of the actor's spec: `ready` is the spec's readiness timeout (a start read
    /// back carries its own).
    pub(crate) fn encoder(&self, ready: Option<Duration>) -> actors::EncodeStart {
        match self {
            Portable::Made { make, args } => {
                let (make, args) = (*make, args.clone());
                Arc::new(move || {
                    let bytes = (CodeRef::of(make), ready, args()?);
                    wire::encode(&bytes)
                        .map(PortableStart)
                        .map_err(|e| format!("cannot encode its start: {e}"))
                })
            }
            Portable::Encoded(encode) => encode.clone(),
        }
    }
}

/// Rebuilds a spec that came from another process (installed as the actors' decoder).
pub(crate) fn decode(wire: &WireSpec) -> Result<actors::ChildSpec, String> {
    let (make, ready, args): (CodeRef<MakeFn>, Option<Duration>, Vec<u8>) =
        wire::decode(&wire.start.0).map_err(|e| format!("its start does not decode: {e}"))?;
    let make = make.resolve().map_err(|e| e.to_string())?;
    let made = make(MakeInput {
        id: &wire.id,
        args: &args,
        ready,
    })?;
    let again = wire.start.clone();
    let mut spec = actors::ChildSpec::from_arc(wire.id.clone(), wire.child_type, made.start)
        .restart(wire.restart)
        .shutdown(wire.shutdown)
        .significant(wire.significant)
        .portable(Arc::new(move || Ok(again.clone())));
    if let Some(delay) = wire.delay {
        spec = spec.restart_delay(delay);
    }
    if let Some(extra) = made.extra {
        spec = spec.extra_type(extra);
    }
    Ok(spec)
}

/// Lets this process rebuild specs that come over its supervision links.
pub(crate) fn install() {
    actors::set_spec_decoder(decode);
}

pub(crate) fn decode_args<A: DeserializeOwned>(args: &[u8]) -> Result<A, String> {
    wire::decode(args).map_err(|e| format!("its arguments do not decode: {e}"))
}

fn make_worker<F, Args>(input: MakeInput<'_>) -> Result<Made, String>
where
    F: Target<Args> + Copy,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let build = FnTarget {
        target: conjure::<F>(),
        args: decode_args::<Args>(input.args)?,
    };
    Ok(Made {
        start: Arc::new(ProcessChild {
            build: Arc::new(build),
            ready: input.ready,
        }),
        extra: None,
    })
}

fn make_template<F, E>(input: MakeInput<'_>) -> Result<Made, String>
where
    F: Target<E> + Copy,
    E: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    decode_args::<()>(input.args)?;
    let build = TemplateTarget {
        target: conjure::<F>(),
        extra: PhantomData::<fn(E)>,
    };
    Ok(Made {
        start: Arc::new(ProcessChild {
            build: Arc::new(build),
            ready: input.ready,
        }),
        extra: Some(ExtraType::of::<E>()),
    })
}
