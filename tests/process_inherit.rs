//! What a child gets from its parent's process besides its bootstrap, under both start methods:
//! no descriptor but those procvisor hands it on purpose (a descriptor the program opened
//! without close-on-exec stays in the parent, as CPython's children never see one), and the
//! parent's standard streams as they are when the child starts. Each scenario runs in a driver,
//! a fresh program, so that the fork server starts after the program changed what it has open.

procvisor::test_init!();

mod common;

use std::os::fd::{AsRawFd, IntoRawFd};

use common::{in_driver, line_with, per_start_method, say};
use procvisor::{Process, StartMethod};

// ---- descriptors without close-on-exec ------------------------------------------------------

/// Whether process `pid` (`"self"` for this one) has `path` open, on any descriptor.
fn has_open(pid: &str, path: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .any(|target| target.to_str() == Some(path))
}

/// Child: tells whether it has `path` open. (Not whether the descriptor's number is open: the
/// number is free once the descriptor is closed, and the child's link or arguments may get it.)
fn report_open(path: String, conn: procvisor::Sender) -> procvisor::Result<()> {
    Ok(conn.send(&has_open("self", &path))?)
}

#[test]
#[ignore = "driver for no_descriptor_leaks_into_children"]
fn driver_leaky_descriptor() {
    if !in_driver() {
        return;
    }
    let method = common::driver_method();
    let path = common::driver_param().expect("a file to open");
    // Opened before this program starts any child (and so before its fork server starts),
    // without close-on-exec, as a C library or `libc::open` without O_CLOEXEC leaves it.
    let file = std::fs::File::create(&path).unwrap();
    // SAFETY: F_SETFD on a descriptor we own; clearing FD_CLOEXEC touches nothing else.
    assert_eq!(
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFD, 0) },
        0
    );
    // Kept open (and leaked) until this driver exits.
    let _fd = file.into_raw_fd();
    say(format!("PARENT {}", has_open("self", &path)));
    // Three children: a fresh spawn, and (from the third spawn on) one started ahead of time;
    // the fork server's spares, forked before and after a start.
    for i in 0..3 {
        let (rx, tx) = procvisor::pipe_oneway().unwrap();
        let p = Process::new(report_open, (path.clone(), tx))
            .start_method(method)
            .start()
            .unwrap();
        let open: bool = common::recv(&rx);
        common::join_ok(&p);
        say(format!("CHILD{i} {open}"));
    }
    if method == StartMethod::Fork {
        let server = procvisor::process::__fork_server_pid().expect("no fork server");
        say(format!(
            "FORKSERVER {}",
            has_open(&server.to_string(), &path)
        ));
    }
}

per_start_method! {
    /// A descriptor the parent opened without close-on-exec is closed in its children, spawned
    /// or forked, and in the fork server that forks them (which holds it for every later child
    /// if it does not close it).
    fn no_descriptor_leaks_into_children(method: StartMethod) {
        let dir = common::TempDir::new("leaky-fd");
        let path = dir.file("leaky");
        let out = common::run_driver_in("driver_leaky_descriptor", method, Some(&path));
        let all = common::describe(&out);
        assert!(out.status.success(), "{all}");
        let stdout = common::stdout_of(&out);
        assert_eq!(line_with(&stdout, "PARENT "), "true", "{all}");
        for i in 0..3 {
            assert_eq!(
                line_with(&stdout, &format!("CHILD{i} ")),
                "false",
                "child {i} has the parent's descriptor open\n{all}"
            );
        }
        if method == StartMethod::Fork {
            assert_eq!(
                line_with(&stdout, "FORKSERVER "),
                "false",
                "the fork server holds the parent's descriptor\n{all}"
            );
        }
    }
}
