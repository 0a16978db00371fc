//! Starting a child: the start-method strategies (CPython's `popen_*` modules). Each one turns a
//! [`Bootstrap`] into a running child and a [`ChildRecord`] that the process supervisor watches.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use procvisor_actors::bootstrap::{self, Bootstrap};
use procvisor_actors::child::ChildRecord;
use procvisor_actors::process_supervisor;

use super::prestart::{self, Blank};

use crate::error::{Error, Result};

/// Starts a child by re-executing this program (or takes the one [`prestart`] has ready),
/// hands it its bootstrap, and puts it under the process supervisor. Returns once the child
/// exists (not once it has run anything).
pub(crate) fn spawn(boot: Bootstrap, fds: &[BorrowedFd<'_>]) -> Result<Arc<ChildRecord>> {
    let blank = prestart::blank_child().map_err(|source| Error::Spawn {
        name: boot.name.clone(),
        source,
    })?;
    launch(blank, boot, fds)
}

/// Hands a child waiting for its bootstrap (spawned, prestarted or forked) the bootstrap and
/// `fds`, and puts it under the process supervisor, which reaps it if nobody joins it.
pub(crate) fn launch(
    blank: Blank,
    boot: Bootstrap,
    fds: &[BorrowedFd<'_>],
) -> Result<Arc<ChildRecord>> {
    let Blank { pid, pidfd, link } = blank;
    let record = Arc::new(ChildRecord::new(
        pid,
        boot.name.clone(),
        boot.daemon,
        pidfd,
        link,
    ));
    let sent = bootstrap::send_with_fds(record.link().as_fd(), &boot, fds);
    process_supervisor::get()
        .children()
        .add(record.clone())
        .map_err(|e| Error::io("cannot watch the child's exit", e))?;
    match sent {
        Ok(()) => Ok(record),
        Err(e) => Err(Error::Bootstrap {
            name: boot.name,
            reason: format!("the child exited before reading its bootstrap ({e})"),
        }),
    }
}
