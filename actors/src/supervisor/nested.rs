//! A supervisor as the child of another, in the same process: its actor is started by the
//! parent's [`StartChild`], and its exit (normal, or `Failed` when it gave up) is the child
//! exit its parent sees. Its events go to its own bus, which forwards to the parent's.

use super::child::{RunningChild, StartChild, StartContext};
use super::event::EventBus;
use super::exit::Exit;
use super::handle::SupervisorRef;
use super::request::BoxFuture;
use super::spawn_supervisor;
use super::spec::{ChildSpec, ChildType, SupervisorSpec};

impl ChildSpec {
    /// A supervisor nested in this process, started from `spec` (again at each restart).
    /// Type `Supervisor`, shutdown `Infinity`, restart `Permanent`. Its path is
    /// `parent/id` (the spec's own name is not used).
    pub fn supervisor(id: impl Into<String>, spec: SupervisorSpec) -> ChildSpec {
        ChildSpec::new(id, ChildType::Supervisor, NestedSupervisor(spec))
    }
}

struct NestedSupervisor(SupervisorSpec);

impl StartChild for NestedSupervisor {
    fn start(
        &self,
        ctx: StartContext,
    ) -> BoxFuture<'static, Result<Box<dyn RunningChild>, String>> {
        let spec = self.0.clone();
        Box::pin(async move {
            let bus = EventBus::new(Some(ctx.events.clone()));
            let sup = spawn_supervisor(spec, ctx.child_path(), bus)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Box::new(RunningSupervisor(sup)) as Box<dyn RunningChild>)
        })
    }
}

/// A running nested supervisor. It has no signals: `terminate` and `kill` both kill its actor,
/// whose children are then killed with it.
struct RunningSupervisor(SupervisorRef);

impl RunningChild for RunningSupervisor {
    fn pid(&self) -> Option<i32> {
        None
    }

    fn wait_exit(&self) -> BoxFuture<'static, Exit> {
        let shared = self.0.shared.clone();
        Box::pin(async move { shared.wait_exit_async().await })
    }

    fn request_stop(&self) {
        self.0.request_stop();
    }

    fn terminate(&self) {
        self.0.kill();
    }

    fn kill(&self) {
        self.0.kill();
    }

    fn supervisor(&self) -> Option<SupervisorRef> {
        Some(self.0.clone())
    }
}

impl Drop for RunningSupervisor {
    fn drop(&mut self) {
        if self.0.is_alive() {
            self.0.kill();
        }
    }
}
