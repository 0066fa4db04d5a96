use mixlab_data::synthetic::{DomainKind, SyntheticConfig, SyntheticCorpus};
use mixlab_data::Split;
#[test]
fn timing() {
    let t = std::time::Instant::now();
    let c = SyntheticCorpus::new(&SyntheticConfig::default()).unwrap();
    eprintln!("world {:.3}s", t.elapsed().as_secs_f64());
    for k in DomainKind::ALL {
        let t = std::time::Instant::now();
        let docs = c.documents(k, Split::Train, 2000);
        let b: usize = docs.iter().map(|d| d.len()).sum();
        let s = t.elapsed().as_secs_f64();
        let t2 = std::time::Instant::now();
        let mut n = 0; for d in &docs { n += serde_json::to_string(d).unwrap().len(); }
        let j = t2.elapsed().as_secs_f64();
        let joined = docs.concat();
        let t3 = std::time::Instant::now();
        let z = zstd::encode_all(joined.as_bytes(), 3).unwrap();
        let zs = t3.elapsed().as_secs_f64();
        eprintln!("{k:<16} gen {:>7.1} MB/s  json {:>7.1} MB/s  zstd {:>7.1} MB/s ratio {:.1} avg doc {}", b as f64/1e6/s, n as f64/1e6/j, b as f64/1e6/zs, b as f64/z.len() as f64, b/2000);
    }
}
