//! The Listener/Client example from the multiprocessing docs, as two processes: the listener
//! runs here, the client in a child. Then the same with a wrong key, failing on both sides.
//!
//! The docs listen on `('localhost', 6000)`; this example lets the OS choose a free port on
//! localhost, so it can run anywhere (pass an address such as `127.0.0.1:6000` or a socket path
//! as the first argument to choose one).
//!
//! ```text
//! $ cargo run --example listener_client
//! listening on 127.0.0.1:40331
//! connection accepted from 127.0.0.1:52174
//!   [client] (2.25, None, "junk", "float")
//!   [client] "hello"
//!   [client] 8
//!   [client] [42, 1729, 0, 0, 0]
//! client exited with 0
//! and now with a wrong key:
//! listener: authentication failed: digest received was wrong
//!   [client] authentication failed: digest sent was rejected
//! ```

use procvisor::{Address, Client, Listener, Process};

const AUTHKEY: &[u8] = b"secret password";

/// The docs' client: connects, receives a value, bytes, and bytes into an array.
fn client(address: Address) -> procvisor::Result<()> {
    let conn = Client::builder(address).authkey(AUTHKEY).connect()?;
    // Python sends the type `float` itself; a Rust message carries its name.
    let value: (f64, Option<i32>, String, String) = conn.recv()?;
    println!("  [client] {value:?}"); // => (2.25, None, "junk", "float")
    println!(
        "  [client] {:?}",
        String::from_utf8_lossy(&conn.recv_bytes()?)
    ); // => "hello"
    let mut arr = [0u8; 5 * 4]; // array('i', [0, 0, 0, 0, 0])
    println!("  [client] {}", conn.recv_bytes_into(&mut arr)?); // => 8
    let ints: Vec<i32> = arr
        .chunks_exact(4)
        .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    println!("  [client] {ints:?}"); // => [42, 1729, 0, 0, 0]
    conn.close();
    Ok(())
}

/// A client that does not know the key.
fn intruder(address: Address) {
    match Client::builder(address)
        .authkey(b"not the password")
        .connect()
    {
        Ok(_) => println!("  [client] connected?!"),
        Err(e) => println!("  [client] {e}"),
    }
}

fn main() -> procvisor::Result<()> {
    procvisor::init();

    let address: Address = match std::env::args().nth(1) {
        Some(text) => text.parse()?,
        None => Address::inet("localhost", 0)?, // family deduced: AF_INET
    };
    // Python's `Listener(address, authkey=AUTHKEY)`.
    let listener = Listener::builder()
        .address(address)
        .authkey(AUTHKEY)
        .bind()?;
    println!("listening on {}", listener.address());

    let p = Process::new(client, (listener.address().clone(),)).start()?;
    let conn = listener.accept()?;
    match listener.last_accepted() {
        Some(peer) => println!("connection accepted from {peer}"),
        None => println!("connection accepted from an unnamed socket"),
    }
    conn.send(&(2.25, None::<i32>, "junk", "float"))?;
    conn.send_bytes(b"hello")?;
    let arr: Vec<u8> = [42i32, 1729].iter().flat_map(|i| i.to_ne_bytes()).collect();
    conn.send_bytes(&arr)?;
    conn.close();
    p.join()?;
    println!("client exited with {}", p.exitcode().unwrap_or(-1));

    println!("and now with a wrong key:");
    let p = Process::new(intruder, (listener.address().clone(),)).start()?;
    match listener.accept() {
        Ok(_) => println!("listener: accepted?!"),
        Err(e) => println!("listener: {e}"),
    }
    p.join()?;
    listener.close();
    Ok(())
}
