//! The `Queue` example from the multiprocessing docs: a child puts `[42, None, 'hello']` on a
//! queue and the parent prints what it gets.
//!
//! Python puts a list of mixed values; in Rust an item is a typed value: here the tuple
//! `(42, None::<i32>, "hello")`, got as `(i32, Option<i32>, String)`. Any serde type works.
//!
//! ```text
//! $ cargo run --example queue
//! (42, None, "hello")
//! ```

use procvisor::{Process, Queue};

type Item = (i32, Option<i32>, String);

/// The child: puts one item on the queue it was given.
fn f(q: Queue<Item>) -> Result<(), procvisor::error::PutError> {
    q.put(&(42, None, "hello".to_string()))
}

fn main() -> procvisor::Result<()> {
    // In a child, `init` runs the child's target and exits: nothing below runs there.
    procvisor::init();

    let q = Queue::new()?;
    // The handle travels in the child's arguments; both processes map the same queue.
    let p = Process::new(f, (q.clone(),)).start()?;
    println!("{:?}", q.get()?); // prints "(42, None, "hello")"
    p.join()?;
    Ok(())
}
