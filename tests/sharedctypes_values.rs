//! `Value`, `Array`, `RawValue`, `RawArray` between real processes: changes visible both
//! ways, handles in args and through a Pipe to a running process, struct and char arrays,
//! typecodes, locks (own, none, given), and nothing left in /dev/shm after a SIGKILLed tree.

procvisor::test_init!();

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{GENEROUS, KillOnDrop, PidsGuard, in_driver, join_ok, recv, say, spawn_driver, start};
use procvisor::sharedctypes::copy;
use procvisor::{
    Array, Char, Child, Connection, Error, Lock, Process, RLock, RawArray, RawValue, Shareable,
    Value, pipe, synchronized,
};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    x: f64,
    y: f64,
}

// SAFETY: repr(C), two f64 fields: plain data, any bit pattern is valid.
unsafe impl Shareable for Point {}

/// Child: negates what the parent wrote, then waits for the parent's next write and reports it.
fn negate_then_watch(
    n: Value<f64>,
    a: Array<i32>,
    points: RawArray<Point>,
    conn: Connection,
) -> procvisor::Result<()> {
    n.set(-n.get());
    for i in 0..a.len() {
        a.update(i, |x| -x)?;
    }
    points.set(0, Point { x: 7.0, y: 8.0 })?;
    conn.send(&"done")?;
    let () = conn.recv()?;
    let p = points.get(1)?;
    Ok(conn.send(&(n.get(), a.to_vec(), (p.x, p.y)))?)
}

#[test]
fn values_and_arrays_are_visible_both_ways() {
    let mut guard = KillOnDrop::new();
    let n = Value::new(2.5f64).unwrap();
    let a = Array::from_typecode('i', &[1, 2, 3], true).unwrap();
    let points = RawArray::from_slice(&[Point { x: 1.0, y: 2.0 }; 2]).unwrap();
    let (mine, theirs) = pipe().unwrap();
    let p = start(
        &mut guard,
        Process::new(
            negate_then_watch,
            (n.clone(), a.clone(), points.clone(), theirs),
        ),
    );
    assert_eq!(recv::<String>(&mine), "done");
    assert_eq!(n.get(), -2.5);
    assert_eq!(a.to_vec(), [-1, -2, -3]);
    assert_eq!(points.get(0).unwrap(), Point { x: 7.0, y: 8.0 });
    // Now the parent writes and the running child reads.
    n.set(9.75);
    a.write_slice(1, &[20, 30]).unwrap();
    points.set(1, Point { x: -1.0, y: 0.5 }).unwrap();
    mine.send(&()).unwrap();
    let (seen_n, seen_a, seen_p): (f64, Vec<i32>, (f64, f64)) = recv(&mine);
    assert_eq!(seen_n, 9.75);
    assert_eq!(seen_a, [-1, 20, 30]);
    assert_eq!(seen_p, (-1.0, 0.5));
    join_ok(&p);
}

/// Child: receives a value and a char array through the pipe while running, changes them.
fn from_the_pipe(conn: Connection) -> procvisor::Result<()> {
    let (v, s): (Value<u64>, Array<Char>) = conn.recv()?;
    v.update(|x| x * 3);
    s.set_value(&s.value().to_ascii_uppercase())?;
    Ok(conn.send(&"changed")?)
}

#[test]
fn handles_sent_through_a_pipe_to_a_running_process_share_the_memory() {
    let mut guard = KillOnDrop::new();
    let (mine, theirs) = pipe().unwrap();
    let p = start(&mut guard, Process::new(from_the_pipe, (theirs,)));
    let v = Value::from_typecode('Q', 14u64, false).unwrap();
    let lock = RLock::new().unwrap();
    let s = Array::from_bytes(b"hello world", lock.clone()).unwrap();
    mine.send(&(v.clone(), s.clone())).unwrap();
    assert_eq!(recv::<String>(&mine), "changed");
    assert_eq!(v.get(), 42);
    assert_eq!(s.value(), b"HELLO WORLD");
    join_ok(&p);
}

#[test]
fn char_arrays_have_value_and_raw() {
    let s = RawArray::<Char>::from_typecode('c', 6).unwrap();
    s.set_value(b"abc").unwrap();
    assert_eq!(s.value(), b"abc");
    assert_eq!(s.raw(), b"abc\0\0\0");
    s.set_raw(b"xy").unwrap();
    assert_eq!(s.value(), b"xyc");
    s.set_value(b"sixsix").unwrap(); // exactly full: no NUL
    assert_eq!(s.value(), b"sixsix");
    assert!(matches!(
        s.set_value(b"seven!!"),
        Err(Error::StringTooLong {
            len: 7,
            capacity: 6
        })
    ));
}

#[test]
fn typecodes_are_checked_against_the_element_type() {
    assert!(Value::from_typecode('d', 1.0f64, true).is_ok());
    assert!(Value::from_typecode('l', 1i64, true).is_ok());
    assert!(Value::from_typecode('q', 1i64, true).is_ok());
    assert!(matches!(
        Value::from_typecode('i', 1.0f64, true),
        Err(Error::TypeCodeMismatch { typecode: 'i', .. })
    ));
    assert!(matches!(
        RawArray::<i32>::from_typecode('z', 3),
        Err(Error::UnknownTypeCode { typecode: 'z' })
    ));
    assert_eq!(procvisor::TypeCode::from_char('H').unwrap().size(), 2);
}

#[test]
fn indexes_past_the_end_are_errors() {
    let a = Array::<i16>::new(3).unwrap();
    assert_eq!(a.to_vec(), [0, 0, 0]);
    assert!(matches!(
        a.get(3),
        Err(Error::IndexOutOfRange { index: 3, len: 3 })
    ));
    assert!(a.set(7, 1).is_err());
    assert!(matches!(
        a.write_slice(2, &[1, 2]),
        Err(Error::LengthMismatch {
            got: 2,
            len: 3,
            start: 2
        })
    ));
}

#[test]
fn locks_own_none_or_given_and_synchronized_and_copy() {
    let own = Value::new(1i32).unwrap();
    assert!(matches!(own.get_lock(), Some(procvisor::AnyLock::RLock(_))));
    let raw = Value::with_lock(1i32, false).unwrap();
    assert!(raw.get_lock().is_none());
    let lock = Lock::new().unwrap();
    let given = Array::<u8>::with_lock(4, lock.clone()).unwrap();
    // The given lock is the array's lock: held elsewhere, the array waits for it.
    let g = lock.lock();
    let other = given.clone();
    let t = std::thread::spawn(move || other.set(0, 5));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(given.get_obj().get(0).unwrap(), 0);
    drop(g);
    t.join().unwrap().unwrap();
    assert_eq!(given.get(0).unwrap(), 5);

    let rv = RawValue::new(3.5f32).unwrap();
    let sv = synchronized(rv.clone(), None).unwrap();
    sv.set(4.5);
    assert_eq!(rv.get(), 4.5);
    let c = copy(&rv).unwrap();
    c.set(0.0);
    assert_eq!(rv.get(), 4.5);
    assert_eq!(sv.get_obj().get(), 4.5);
}

/// Child: adds 1 to the counter `n` times under the value's lock.
fn add(v: Value<i64>, n: u32) {
    for _ in 0..n {
        v.update(|x| x + 1);
    }
}

#[test]
fn updates_under_the_lock_from_several_processes_are_not_lost() {
    let mut guard = KillOnDrop::new();
    let v = Value::new(0i64).unwrap();
    let procs: Vec<Child> = (0..3)
        .map(|_| start(&mut guard, Process::new(add, (v.clone(), 2000))))
        .collect();
    add(v.clone(), 2000);
    for p in &procs {
        join_ok(p);
    }
    assert_eq!(v.get(), 8000);
}

// ---- nothing left behind -------------------------------------------------------------------

fn dev_shm() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn hold_shared(v: Value<i32>, a: Array<Point>, lock: Lock, sem: procvisor::Semaphore) {
    let _g = lock.lock();
    let _u = sem.lock();
    v.set(1);
    let _ = a.set(0, Point { x: 1.0, y: 1.0 });
    say(format!("PID {}", std::process::id()));
    std::thread::sleep(Duration::from_secs(3600));
}

#[test]
#[ignore = "driver for a_sigkilled_tree_leaves_nothing_in_dev_shm"]
fn driver_shared_objects() {
    if !in_driver() {
        return;
    }
    let v = Value::new(0i32).unwrap();
    let a = Array::<Point>::new(4).unwrap();
    let sem = procvisor::Semaphore::new(2).unwrap();
    let cond = procvisor::Condition::new().unwrap();
    let _ = (
        procvisor::Event::new().unwrap(),
        procvisor::Barrier::new(2).unwrap(),
        cond,
    );
    let _children: Vec<Child> = (0..2)
        .map(|_| {
            let l = Lock::new().unwrap(); // one lock per child: both can hold theirs
            Process::new(hold_shared, (v.clone(), a.clone(), l, sem.clone()))
                .start()
                .unwrap()
        })
        .collect();
    say(format!("PID {}", std::process::id()));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[test]
fn a_sigkilled_tree_leaves_nothing_in_dev_shm() {
    let before = dev_shm();
    let mut driver = spawn_driver("driver_shared_objects", None);
    let mut pids = PidsGuard::default();
    for _ in 0..3 {
        pids.0
            .push(driver.expect_line("PID ", GENEROUS).parse().unwrap());
    }
    // The driver's own pid is among them; the descendants are the others.
    let driver_pid = driver.guard.pid();
    let children: Vec<i32> = pids
        .0
        .iter()
        .copied()
        .filter(|&p| p != driver_pid)
        .collect();
    assert_eq!(children.len(), 2, "{:?}", pids.0);
    common::kill_driver_and_expect_descendants_gone(&mut driver.guard, &children);
    let after = dev_shm();
    let left: Vec<&String> = after.difference(&before).collect();
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}
