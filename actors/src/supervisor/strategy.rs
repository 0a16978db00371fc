//! The two decisions a supervisor makes when a child exits, each one `match` over its policy:
//! restart it at all (the child's [`Restart`] type, [`should_restart`]), and which children
//! restart with it (the supervisor's [`Strategy`], [`restart_set`]).

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::exit::ChildExit;

/// When a child that exited is restarted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Restart {
    /// Always.
    #[default]
    Permanent,
    /// Only after an abnormal exit: not after exit code 0 and not after a shutdown (one its
    /// supervisor asked for, or a death by SIGTERM).
    Transient,
    /// Never (and the child is forgotten once it has exited).
    Temporary,
}

/// Which children are restarted when one of them has to be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Strategy {
    /// Only the child that exited.
    #[default]
    OneForOne,
    /// All children: the others are stopped (in reverse start order), then all are started
    /// again in start order.
    OneForAll,
    /// The child that exited and every child started after it: those are stopped in reverse
    /// order, then all of them are started again in start order.
    RestForOne,
    /// Like `OneForOne`, for children added at run time from one template spec with extra
    /// arguments (`start_child_with`).
    SimpleOneForOne,
}

/// Whether a child of this restart type is restarted after this exit.
pub(crate) fn should_restart(restart: Restart, exit: &ChildExit) -> bool {
    match restart {
        Restart::Permanent => true,
        Restart::Transient => exit.is_abnormal(),
        Restart::Temporary => false,
    }
}

/// The children (positions in start order) restarted when child `failed` of `len` must be:
/// the others in the range are stopped in reverse order first, then all start in order.
pub(crate) fn restart_set(strategy: Strategy, len: usize, failed: usize) -> Range<usize> {
    match strategy {
        Strategy::OneForOne | Strategy::SimpleOneForOne => failed..failed + 1,
        Strategy::OneForAll => 0..len,
        Strategy::RestForOne => failed..len,
    }
}

#[cfg(test)]
mod tests {
    use super::super::exit::Exit;
    use super::*;

    #[test]
    fn sets() {
        assert_eq!(restart_set(Strategy::OneForOne, 4, 1), 1..2);
        assert_eq!(restart_set(Strategy::SimpleOneForOne, 4, 3), 3..4);
        assert_eq!(restart_set(Strategy::OneForAll, 4, 1), 0..4);
        assert_eq!(restart_set(Strategy::RestForOne, 4, 1), 1..4);
        assert_eq!(restart_set(Strategy::RestForOne, 4, 3), 3..4);
    }

    #[test]
    fn restart_types() {
        let crash = ChildExit {
            exit: Exit::Code(1),
            requested: false,
        };
        let normal = ChildExit {
            exit: Exit::Code(0),
            requested: false,
        };
        assert!(should_restart(Restart::Permanent, &normal));
        assert!(should_restart(Restart::Transient, &crash));
        assert!(!should_restart(Restart::Transient, &normal));
        assert!(!should_restart(Restart::Temporary, &crash));
    }
}
