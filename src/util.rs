//! Logging through `tracing`, in multiprocessing's format: `[INFO/Process-1] message`.
//!
//! procvisor reports its lifecycle events ("child process calling run()", "process shutting
//! down", "process exiting with exitcode 0", "calling terminate() for daemon …") as `tracing`
//! events with target [`LOG_TARGET`]. [`log_to_stderr`] installs a subscriber that prints them
//! (and your own events) on stderr with the level and the current process's name; children
//! started afterwards do the same at the same level. Any other subscriber can show the process
//! name too: it is `procvisor::current_process().name()`.

use std::sync::atomic::{AtomicU8, Ordering};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::error::{Error, Result};

/// The `tracing` target of procvisor's own events (Python's logger name `multiprocessing`).
pub const LOG_TARGET: &str = "procvisor";

static LEVEL: AtomicU8 = AtomicU8::new(0);

/// Prints procvisor's log (and the rest of the program's `tracing` events) on stderr at `level`
/// and above, as `[LEVEL/ProcessName] message`. Processes started afterwards inherit the level.
/// Fails if another global subscriber is already installed.
///
/// ```no_run
/// procvisor::init();
/// procvisor::log_to_stderr(tracing::Level::INFO).unwrap();
/// ```
pub fn log_to_stderr(level: Level) -> Result<()> {
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .event_format(ProcessFormat)
        .try_init()
        .map_err(|e| Error::io("log_to_stderr", std::io::Error::other(e.to_string())))?;
    LEVEL.store(level_to_u8(level), Ordering::SeqCst);
    Ok(())
}

/// The level set by [`log_to_stderr`] in this process, if any.
pub fn log_level() -> Option<Level> {
    level_from_u8(LEVEL.load(Ordering::SeqCst))
}

pub(crate) fn current_level_u8() -> Option<u8> {
    match LEVEL.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n),
    }
}

fn level_to_u8(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

pub(crate) fn level_from_u8(n: u8) -> Option<Level> {
    Some(match n {
        1 => Level::ERROR,
        2 => Level::WARN,
        3 => Level::INFO,
        4 => Level::DEBUG,
        5 => Level::TRACE,
        _ => return None,
    })
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
        let name = crate::process::current::name_for_messages();
        write!(writer, "[{}/{}] ", event.metadata().level(), name)?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
