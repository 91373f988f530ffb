//! Reading the files sonde is told about (configs, secrets, certificates, sysfs values
//! excepted): capped in size, so a wrong path to a huge file costs an error, not memory.

use std::io::Read;
use std::path::Path;

/// Reads at most `cap` bytes of a file; larger files are an error.
pub fn read_capped(path: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(cap + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(std::io::Error::other(format!("larger than {cap} bytes")));
    }
    Ok(bytes)
}
