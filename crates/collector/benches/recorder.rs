//! Recorder hot path, ns/op: one thread, and two threads counting at once.
//!
//! `cargo bench -p collector --bench recorder`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use collector::Recorder;
use criterion::{Criterion, criterion_group, criterion_main};

fn one_thread(c: &mut Criterion) {
    let r = Recorder::default();
    let mut g = c.benchmark_group("recorder/1-thread");
    g.bench_function("request", |b| {
        b.iter(|| r.request(black_box(Duration::from_micros(1234))));
    });
    g.bench_function("event_in", |b| b.iter(|| r.event_in()));
    g.bench_function("error", |b| b.iter(|| r.error()));
    let counter = r.counter("custom.jobs").unwrap();
    g.bench_function("custom_counter_handle", |b| {
        b.iter(|| counter.add(black_box(1.0)));
    });
    g.bench_function("custom_add_by_name", |b| {
        b.iter(|| r.add(black_box("custom.jobs"), 1.0));
    });
    g.finish();
}

/// Two threads: the measured one and a second one hammering the same
/// recorder for the whole measurement.
fn two_threads(c: &mut Criterion) {
    let r = Recorder::default();
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (r, stop) = (r.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..1000 {
                    r.request(black_box(Duration::from_micros(10)));
                    r.event_in();
                }
            }
        })
    };
    // Let the second thread start before measuring.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(50) {
        std::hint::spin_loop();
    }
    let mut g = c.benchmark_group("recorder/2-threads");
    g.bench_function("request", |b| {
        b.iter(|| r.request(black_box(Duration::from_micros(1234))));
    });
    g.bench_function("event_in", |b| b.iter(|| r.event_in()));
    g.finish();
    stop.store(true, Ordering::Relaxed);
    other.join().unwrap();
}

criterion_group!(benches, one_thread, two_threads);
criterion_main!(benches);
