//! Times the initial noise of a 480p × 81-frame request (2,096,640 normals): `SeededNoise::draw`
//! alone, and `DrawnAhead` from its creation to the tensor. Prints one JSON line.
//!
//! `cargo run --release -p turbine-samplers --example noise_bench -- [rounds]`

use std::time::Instant;

use turbine_samplers::{DrawnAhead, NoiseSource, SeededNoise};

const SHAPE: [usize; 4] = [16, 21, 60, 104];

fn median(mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(9), |a| a.parse())?;
    let (mut seeded, mut ahead) = (Vec::new(), Vec::new());
    let mut sum = 0f64;
    for seed in 0..rounds as u64 {
        let t = Instant::now();
        let v = SeededNoise::new(seed).draw(&SHAPE)?;
        seeded.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let w = DrawnAhead::new(seed, &SHAPE).draw(&SHAPE)?;
        ahead.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(v, w, "seed {seed}: DrawnAhead differs from SeededNoise");
        sum += v.iter().map(|&x| f64::from(x)).sum::<f64>();
    }
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "{{\"values\": {}, \"rounds\": {rounds}, \"cores\": {threads}, \"seeded_ms\": {{\"median\": {:.2}, \"min\": {:.2}, \"max\": {:.2}}}, \"drawn_ahead_ms\": {{\"median\": {:.2}, \"min\": {:.2}, \"max\": {:.2}}}, \"checksum\": {sum:.6}}}",
        SHAPE.iter().product::<usize>(),
        median(seeded.clone()),
        seeded.iter().copied().fold(f64::INFINITY, f64::min),
        seeded.iter().copied().fold(0.0, f64::max),
        median(ahead.clone()),
        ahead.iter().copied().fold(f64::INFINITY, f64::min),
        ahead.iter().copied().fold(0.0, f64::max),
    );
    Ok(())
}
