//! Checks that the dashboard's front-end files exist before they are
//! embedded with `include_bytes!` (see `src/http/assets.rs`): the chart
//! library comes from the npm registry, pinned by `dashboard/package-lock.json`,
//! and is installed by `scripts/build-dashboard` (`npm ci` in `dashboard/`).

use std::path::Path;

/// Files under `dashboard/` that the binary embeds.
const FILES: &[&str] = &[
    "node_modules/uplot/dist/uPlot.iife.min.js",
    "node_modules/uplot/dist/uPlot.min.css",
    "src/index.html",
    "src/app.js",
    "src/app.css",
];

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_owned());
    let dashboard = Path::new(&manifest).join("../../dashboard");
    let mut missing = Vec::new();
    for f in FILES {
        let path = dashboard.join(f);
        println!("cargo::rerun-if-changed={}", path.display());
        if !path.is_file() {
            missing.push(*f);
        }
    }
    println!("cargo::rerun-if-changed=../../dashboard/package-lock.json");
    if !missing.is_empty() {
        println!(
            "cargo::error=the dashboard's front-end files are missing ({}): run `scripts/build-dashboard` \
             (it runs `npm ci` in dashboard/; needs Node.js and npm) before `cargo build`",
            missing.join(", ")
        );
    }
}
