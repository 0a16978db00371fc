use procvisor::{Process, StartMethod};
fn report() {
    let s = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
    for l in s.lines().filter(|l| {
        l.starts_with("Rss")
            || l.starts_with("Anonymous")
            || l.starts_with("Private")
            || l.starts_with("Shared")
    }) {
        println!("child {l}");
    }
    let maps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut name = String::new();
    for l in maps.lines() {
        if l.contains('-') && !l.starts_with(char::is_uppercase) {
            name = l.split_whitespace().skip(5).collect::<Vec<_>>().join(" ");
            let perms = l.split_whitespace().nth(1).unwrap_or("");
            name = format!("{perms} {name}");
        }
        if l.starts_with("Rss:") {
            let kb: u64 = l.split_whitespace().nth(1).unwrap().parse().unwrap();
            if kb > 0 {
                println!("  {kb:6} kB {name}");
            }
        }
    }
}
fn main() {
    procvisor::init();
    for _ in 0..3 {
        let p = Process::new(report, ())
            .with_start_method(StartMethod::Fork)
            .unwrap();
        p.start().unwrap();
        p.join(None).unwrap();
    }
}
