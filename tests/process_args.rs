//! What a child's arguments can carry: many shared objects (each memfd travels once, however
//! many handles name it), more descriptors than one `sendmsg` takes, connections, and the
//! arguments' own descriptors closed here once the child has them — under both start methods.

procvisor::test_init!();

mod common;

use common::{GENEROUS, KillOnDrop, join_ok, per_start_method, start};
use procvisor::{Connection, Process, StartMethod, Value};

/// Child: adds `i` to the `i`-th value.
fn add_index(values: Vec<Value<i64>>) {
    for (i, v) in values.iter().enumerate() {
        v.update(|x| x + i as i64);
    }
}

/// Child: adds one to each value of both lists (which name the same objects).
fn add_twice(a: Vec<Value<i64>>, b: Vec<Value<i64>>) {
    for v in a.iter().chain(&b) {
        v.update(|x| x + 1);
    }
}

/// Child: says hello on `conn`.
fn hello(conn: Connection) -> procvisor::Result<()> {
    conn.send(&"hello")?;
    Ok(())
}

fn values(n: usize) -> Vec<Value<i64>> {
    (0..n).map(|_| Value::new(100i64).unwrap()).collect()
}

fn shared_objects_reach_the_child(method: StartMethod, n: usize) {
    let mut guard = KillOnDrop::new();
    let vals = values(n);
    let child = start(
        &mut guard,
        Process::new(add_index, (vals.clone(),)).start_method(method),
    );
    join_ok(&child);
    for (i, v) in vals.iter().enumerate() {
        assert_eq!(v.get(), 100 + i as i64, "value {i} of {n}");
    }
}

per_start_method! {
    /// 64 synchronized values: each one's data and lock share a memfd, which travels once.
    fn sixty_four_shared_objects_reach_one_child(method: StartMethod) {
        shared_objects_reach_the_child(method, 64);
    }

    /// More memfds than one `sendmsg` can carry (253): they travel in batches.
    fn six_hundred_shared_objects_reach_one_child(method: StartMethod) {
        shared_objects_reach_the_child(method, 600);
    }

    /// Two handles of each object in one child's arguments: one descriptor each, imported
    /// twice.
    fn handles_named_twice_travel_once(method: StartMethod) {
        let mut guard = KillOnDrop::new();
        let vals = values(10);
        let child = start(
            &mut guard,
            Process::new(add_twice, (vals.clone(), vals.clone())).start_method(method),
        );
        join_ok(&child);
        assert!(vals.iter().all(|v| v.get() == 102));
    }

    /// An unstarted process owns its arguments: dropping it closes the connection it holds,
    /// so the peer sees end-of-file; once started, only the child holds that end.
    fn a_connection_in_the_arguments_is_the_childs_alone(method: StartMethod) {
        let (ours, theirs) = procvisor::pipe().unwrap();
        drop(Process::new(hello, (theirs,)).start_method(method));
        assert!(ours.poll_timeout(GENEROUS).unwrap(), "EOF is readable");
        assert!(ours.recv::<String>().is_err(), "the dropped process closed its end");

        let mut guard = KillOnDrop::new();
        let (ours, theirs) = procvisor::pipe().unwrap();
        let child = start(&mut guard, Process::new(hello, (theirs,)).start_method(method));
        assert_eq!(ours.recv::<String>().unwrap(), "hello");
        join_ok(&child);
        assert!(ours.recv::<String>().is_err(), "the child's exit closed the last copy");
    }
}
