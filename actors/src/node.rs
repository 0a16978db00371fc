//! The node: the small tokio runtime every procvisor process runs for its actors.
//!
//! Started lazily, on its own thread (`procvisor-node`), the first time the process needs an
//! actor (for example when it starts its first child). User code never runs on it, and it is
//! not the user's runtime, so blocking calls in user code can never stall it and the library
//! works the same inside and outside the user's own tokio runtime.

use std::sync::{Arc, OnceLock};

use ractor::{Actor, ActorRef};
use tokio::runtime::Handle;

use crate::process_supervisor::{Children, ProcessSupervisor, SupervisorMsg};

/// This process's runtime and its long-lived actors.
pub struct Node {
    handle: Handle,
    supervisor: ActorRef<SupervisorMsg>,
    children: Arc<Children>,
}

static NODE: OnceLock<Node> = OnceLock::new();

impl Node {
    /// The node of this process, started on first use.
    pub fn get() -> &'static Node {
        NODE.get_or_init(start)
    }

    /// The node if it has been started, without starting it.
    pub fn try_get() -> Option<&'static Node> {
        NODE.get()
    }

    /// The runtime handle, for spawning tasks that serve actors.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The process supervisor actor.
    pub fn supervisor(&self) -> &ActorRef<SupervisorMsg> {
        &self.supervisor
    }

    /// This process's children, which the process supervisor watches.
    pub fn children(&self) -> &Children {
        &self.children
    }
}

fn start() -> Node {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("procvisor-node".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cannot build the procvisor node runtime");
            rt.block_on(async move {
                let children =
                    Arc::new(Children::new().expect("cannot create the child exit watch"));
                let (supervisor, _) = Actor::spawn(None, ProcessSupervisor, children.clone())
                    .await
                    .expect("cannot start the process supervisor actor");
                let _ = tx.send(Node {
                    handle: Handle::current(),
                    supervisor,
                    children,
                });
                std::future::pending::<()>().await;
            });
        })
        .expect("cannot start the procvisor node thread");
    rx.recv()
        .expect("the procvisor node thread died while starting")
}
