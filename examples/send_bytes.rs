//! The Connection example from the multiprocessing docs: `send`/`recv` of a value,
//! `send_bytes`/`recv_bytes`, and `recv_bytes_into` an array that is larger than the message.
//!
//! Python's `array('i', ...)` becomes a slice of `i32` sent as its native-endian bytes.
//!
//! ```text
//! $ cargo run --example send_bytes
//! (1, "hello", None)
//! "thank you"
//! count = 20
//! [0, 1, 2, 3, 4, 0, 0, 0, 0, 0]
//! BufferTooShort: buffer too short: the message is 20 bytes, the buffer has room for 8; the message was [0, 1, 2, 3, 4]
//! ```

use procvisor::error::RecvError;
use procvisor::pipe;

fn ints_to_bytes(ints: &[i32]) -> Vec<u8> {
    ints.iter().flat_map(|i| i.to_ne_bytes()).collect()
}

fn bytes_to_ints(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(4)
        .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn main() -> procvisor::Result<()> {
    procvisor::init();

    // >>> a, b = Pipe()
    let (a, b) = pipe()?;

    // >>> a.send([1, 'hello', None]); b.recv()
    a.send(&(1, "hello", None::<i32>))?;
    println!("{:?}", b.recv::<(i32, String, Option<i32>)>()?);

    // >>> b.send_bytes('thank you'); a.recv_bytes()
    b.send_bytes(b"thank you")?;
    println!("{:?}", String::from_utf8_lossy(&a.recv_bytes()?));

    // >>> arr1 = array.array('i', range(5)); arr2 = array.array('i', [0] * 10)
    // >>> a.send_bytes(arr1); count = b.recv_bytes_into(arr2)
    let arr1 = ints_to_bytes(&[0, 1, 2, 3, 4]);
    let mut arr2 = ints_to_bytes(&[0; 10]);
    a.send_bytes(&arr1)?;
    let count = b.recv_bytes_into(&mut arr2)?;
    assert_eq!(count, arr1.len());
    println!("count = {count}");
    println!("{:?}", bytes_to_ints(&arr2));

    // When the buffer is too short the whole message comes back in the error, as in Python
    // (`e.args[0]`).
    a.send_bytes(&arr1)?;
    let mut small = [0u8; 8];
    match b.recv_bytes_into(&mut small) {
        Err(err @ RecvError::BufferTooShort { .. }) => {
            let text = err.to_string();
            let message = err.into_message().unwrap_or_default();
            println!(
                "BufferTooShort: {text}; the message was {:?}",
                bytes_to_ints(&message)
            );
        }
        other => println!("unexpected: {other:?}"),
    }
    Ok(())
}
