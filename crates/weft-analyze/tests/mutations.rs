//! A stable-toolchain stand-in for the cargo-fuzz target in `fuzz/`:
//! thousands of deterministic mutations of real configuration go through
//! load → validate → analyze. A panic anywhere fails the test; every input
//! must come back as objects, reported issues, or nothing at all when it
//! holds no documents.

use std::path::PathBuf;

/// xorshift64*: deterministic, so a failure reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Characters that mean something to YAML, plus invalid UTF-8.
const TOKENS: &[&[u8]] = &[
    b":",
    b"- ",
    b"[",
    b"]",
    b"{",
    b"}",
    b"*a",
    b"&a ",
    b"!!str ",
    b"\n  ",
    b"\n",
    b"---\n",
    b"\"",
    b"'",
    b"#",
    b"|",
    b">",
    b"?",
    b"%",
    b"\t",
    b"\xff\xfe",
    b"0x",
    b"-1",
    b"1e999",
    b"~",
    b"<<: *a\n",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(4) {
            0 => {
                let end = (at + rng.below(64)).min(v.len());
                v.drain(at..end);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            2 if at < v.len() => v[at] = (rng.next() & 0xff) as u8,
            _ => {
                let start = rng.below(v.len() + 1);
                let end = (start + rng.below(200)).min(v.len());
                let chunk = v[start..end].to_vec();
                v.splice(at..at, chunk);
            }
        }
    }
    v
}

fn seeds() -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                out.push(std::fs::read(&p).unwrap());
            }
        }
    }
    assert!(out.len() >= 8, "examples/ holds the seed corpus");
    out
}

#[test]
fn mutated_configuration_never_panics() {
    let seeds = seeds();
    let mut rng = Rng(0x005e_ed0f_7e57);
    let mut reported = 0;
    for i in 0..3000 {
        let input = mutate(&mut rng, &seeds[i % seeds.len()]);
        weft_config::fuzzing::load_validate_analyze(&input, |resources, issues| {
            let findings = weft_analyze::analyze(resources, issues, &Default::default());
            if !issues.is_empty() || !findings.is_empty() {
                reported += 1;
            }
            assert!(
                !resources.is_empty()
                    || !issues.is_empty()
                    || input.iter().all(|b| b.is_ascii_whitespace() || *b == b'-'),
                "input {i} vanished without a trace"
            );
        });
    }
    // Most mutations break something; a mutator that never did would make
    // this test worthless.
    assert!(
        reported > 1000,
        "only {reported} of 3000 mutations were reported"
    );
}
