//! Print one seed's client history for one key (debugging aid).
//! `cargo run --release -p synod-tools --example dump_history -- SEED REPLICAS KEY`
fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let seed: u64 = a[0].parse().unwrap();
    let replicas: u32 = a[1].parse().unwrap();
    let cfg = synod::sim::SimConfig::new(seed, replicas);
    let (_, h) = synod::sim::run_with_history(&cfg);
    for op in h.iter().filter(|o| o.key.as_ref() == a[2].as_bytes()) {
        println!(
            "c{} {:>10} {:>10} {:?} {:?}",
            op.client, op.call, op.ret, op.input, op.output
        );
    }
}
