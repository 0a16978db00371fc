//! The two decisions a supervisor makes when a child exits, each one `match`: restart it at
//! all ([`should_restart`]), and which children restart with it ([`restart_set`]).

use std::ops::Range;

use super::child::ChildExit;
use super::spec::{Restart, Strategy};

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
    use super::super::child::Exit;
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
