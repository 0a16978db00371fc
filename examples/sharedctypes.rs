//! The docs' `multiprocessing.sharedctypes` example, with a `#[repr(C)]` `Point`.
//!
//! ```text
//! cargo run --example sharedctypes
//! 49
//! 0.1111111111111111
//! HELLO WORLD
//! [(3.515625, 39.0625), (33.0625, 4.0), (5.640625, 90.25)]
//! ```

use procvisor::{Array, Char, Lock, Process, Shareable, Value};

#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Point {
    x: f64,
    y: f64,
}

// SAFETY: repr(C), two f64 fields: no pointers, and any bit pattern is a valid Point.
unsafe impl Shareable for Point {}

fn modify(n: Value<i32>, x: Value<f64>, s: Array<Char>, a: Array<Point>) -> procvisor::Result<()> {
    n.update(|v| v.pow(2));
    x.update(|v| v.powi(2));
    s.set_value(&s.value().to_ascii_uppercase())?;
    for i in 0..a.len() {
        a.update(i, |p| Point {
            x: p.x.powi(2),
            y: p.y.powi(2),
        })?;
    }
    Ok(())
}

fn main() -> procvisor::Result<()> {
    procvisor::init();
    let lock = Lock::new()?;

    let n = Value::from_typecode('i', 7, true)?;
    let x = Value::with_lock(1.0 / 3.0, false)?;
    let s = Array::from_bytes(b"hello world", lock.clone())?;
    let points = [(1.875, -6.25), (-5.75, 2.0), (2.375, 9.5)].map(|(x, y)| Point { x, y });
    let a = Array::from_slice_with_lock(&points, lock)?;

    let p = Process::new(modify, (n.clone(), x.clone(), s.clone(), a.clone())).start()?;
    p.join()?;

    println!("{}", n.get());
    println!("{}", x.get());
    println!("{}", String::from_utf8_lossy(&s.value()));
    let squared: Vec<(f64, f64)> = a.to_vec().iter().map(|p| (p.x, p.y)).collect();
    println!("{squared:?}");
    Ok(())
}
