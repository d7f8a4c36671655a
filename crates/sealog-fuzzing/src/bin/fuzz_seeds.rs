//! Writes the seed corpus of every fuzz target: `fuzz-seeds <corpus dir>`
//! creates `<corpus dir>/<target>/<seed>` for each seed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    for (target, name, bytes) in sealog_fuzzing::seeds::all()? {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
    }
    Ok(())
}
