//! The `Pipe` example from the multiprocessing docs: a child sends `[42, None, 'hello']` through
//! one end of a pipe and the parent prints what arrives at the other.
//!
//! Python sends a list of mixed values; in Rust the message is a typed value: here the tuple
//! `(42, None::<i32>, "hello")`, received as `(i32, Option<i32>, String)`. Any serde type works
//! (a struct, an enum, a `Vec` of an enum for a truly mixed list).
//!
//! ```text
//! $ cargo run --example pipe
//! (42, None, "hello")
//! ```

use procvisor::{Connection, Process, pipe};

/// The child: sends one message on its end of the pipe and closes it.
fn f(conn: Connection) -> procvisor::Result<()> {
    conn.send(&(42, None::<i32>, "hello"))?;
    conn.close();
    Ok(())
}

fn main() -> procvisor::Result<()> {
    // In a child, `init` runs the child's target and exits: nothing below runs there.
    procvisor::init();

    let (parent_conn, child_conn) = pipe()?;
    // The child's end travels in its arguments (its file descriptor goes with it); this
    // process's copy is dropped once it is encoded.
    let p = Process::new(f, (child_conn,)).start()?;
    let received: (i32, Option<i32>, String) = parent_conn.recv()?;
    println!("{received:?}"); // prints "(42, None, "hello")"
    p.join()?;
    Ok(())
}
