//! Issue 13: `synod-server --trace FILE` on real processes. Three traced
//! servers serve writes (and one is killed and restarted, so catch-up runs
//! too); each one's file parses, the merged trace's clocks are consistent
//! (every receive's vector clock dominates its send's, each node's clocks
//! only grow), server-to-server frames are matched send to receive across
//! processes, and client frames (clients do not trace) are local events.

mod common;

use std::time::Duration;

use common::*;
use synod::trace;

#[test]
fn traced_servers_write_clocks_that_check_across_processes() {
    let mut c = Cluster::new_with_args(3, &["--trace", "{dir}/trace-{node}.log"]);
    let mut client = c.client();
    for i in 0..40u32 {
        client
            .put(format!("k{i}").into_bytes(), &b"v"[..])
            .expect("put");
    }
    // A restart truncates that node's trace and starts its clocks again,
    // so read node 2's first life before restarting it.
    c.kill(2);
    for i in 40..60u32 {
        client
            .put(format!("k{i}").into_bytes(), &b"v"[..])
            .expect("put with one node down");
    }
    assert_eq!(client.get(&b"k7"[..]).unwrap().as_deref(), Some(&b"v"[..]));
    // Frames reach the file at the end of each loop turn: give the last
    // ones a moment, then stop everything.
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..2 {
        c.kill(i);
    }

    let texts: Vec<String> = (0..3)
        .map(|i| std::fs::read_to_string(c.dir.join(format!("trace-{i}.log"))).expect("a trace"))
        .collect();
    for (i, t) in texts.iter().enumerate() {
        let events = trace::parse(t).unwrap_or_else(|e| panic!("trace {i} parses: {e}"));
        assert!(
            events.len() > 100,
            "trace {i}: only {} events",
            events.len()
        );
        assert!(
            events.iter().all(|e| e.host == c.nodes[i].addr),
            "trace {i} names another host"
        );
    }
    let merged = trace::merge(&texts).expect("the traces merge");
    // `synod trace-merge` writes the same merge.
    let files: Vec<_> = (0..3)
        .map(|i| c.dir.join(format!("trace-{i}.log")))
        .collect();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_synod"))
        .arg("trace-merge")
        .args(&files)
        .output()
        .expect("run synod trace-merge");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), merged);
    assert!(String::from_utf8_lossy(&out.stderr).contains("clocks consistent"));
    let events = trace::parse(&merged).unwrap();
    let pairs = trace::check(&events).expect("the clocks are consistent");
    assert!(pairs > 200, "only {pairs} sends matched to receives");
    let count =
        |pred: &dyn Fn(&trace::TraceEvent) -> bool| events.iter().filter(|e| pred(e)).count();
    // Paxos traffic between the servers, stamped on the wire.
    assert!(count(&|e| e.text.contains(" recv Accept g1 ") && e.msg.is_some()) > 10);
    assert!(count(&|e| e.text.contains(" recv Accepted g1 ") && e.msg.is_some()) > 10);
    // The client's requests are local events: it sent no stamp, and no
    // stamp went back to it.
    assert!(count(&|e| e.text.contains(" recv Put g1 (untraced sender)")) >= 60);
    assert!(count(&|e| e.text.contains(" send Ok g1 (untraced receiver)")) >= 60);
    // A vector clock of one node names the others: knowledge flowed.
    let last = events
        .iter()
        .rev()
        .find(|e| e.host == c.nodes[0].addr)
        .unwrap();
    for n in &c.nodes {
        assert!(last.clock.0.contains_key(&n.addr), "{:?}", last.clock);
    }
}
