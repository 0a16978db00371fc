//! The docs' shared memory example: a child sets a `Value('d')` and negates an `Array('i')`.
//!
//! ```text
//! cargo run --example value_array
//! 3.1415927
//! [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]
//! ```

use procvisor::{Array, Process, Value};

// The docs' literal, printed as the docs print it (not f64::consts::PI).
#[allow(clippy::approx_constant)]
fn f(n: Value<f64>, a: Array<i32>) -> procvisor::Result<()> {
    n.set(3.1415927);
    for i in 0..a.len() {
        a.set(i, -a.get(i)?)?;
    }
    Ok(())
}

fn main() -> procvisor::Result<()> {
    procvisor::init();
    let num = Value::from_typecode('d', 0.0, true)?;
    let arr = Array::from_typecode('i', &(0..10).collect::<Vec<i32>>(), true)?;

    let p = Process::new(f, (num.clone(), arr.clone())).start()?;
    p.join()?;

    println!("{}", num.get());
    println!("{:?}", arr.to_vec());
    Ok(())
}
