//! Logging through `tracing`, in multiprocessing's format: `[INFO/Process-1] message`.
//!
//! procvisor reports its lifecycle events ("child process calling run()", "process shutting
//! down", "process exiting with exitcode 0", "calling terminate() for daemon …") as `tracing`
//! events with target [`LOG_TARGET`]. [`log_to_stderr`] installs a subscriber that prints them
//! (and your own events) on stderr with the level and the current process's name; children
//! started afterwards do the same at the same level. Any other subscriber can show the process
//! name too: it is `procvisor::current_process().name()`.

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::error::LogInitError;
use crate::runtime;

/// The `tracing` target of procvisor's own events (Python's logger name `multiprocessing`).
pub const LOG_TARGET: &str = "procvisor";

/// Prints procvisor's log (and the rest of the program's `tracing` events) on stderr at `level`
/// and above, as `[LEVEL/ProcessName] message`. Processes started afterwards inherit the level.
/// Fails if another global subscriber is already installed.
///
/// ```no_run
/// procvisor::init();
/// procvisor::log_to_stderr(tracing::Level::INFO).unwrap();
/// ```
pub fn log_to_stderr(level: Level) -> Result<(), LogInitError> {
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .event_format(ProcessFormat)
        .try_init()
        .map_err(|e| LogInitError {
            reason: e.to_string(),
        })?;
    runtime::set_log_level(level);
    Ok(())
}

/// The level set by [`log_to_stderr`] in this process, if any.
pub fn log_level() -> Option<Level> {
    runtime::log_level()
}

/// The `[LEVEL/ProcessName] message` event format; usable with any `tracing_subscriber::fmt`
/// subscriber through `.event_format(procvisor::util::ProcessFormat)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessFormat;

impl<S, N> FormatEvent<S, N> for ProcessFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let name = runtime::name_for_messages();
        write!(writer, "[{}/{}] ", event.metadata().level(), name)?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
