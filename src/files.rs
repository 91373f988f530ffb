//! Reading the files sonde is told about (configs, web configs, secrets, certificates,
//! docker configs; sysfs values excepted): regular files only, opened without blocking
//! and capped in size.
//!
//! A wrong path must cost an error naming it, never memory or a hang: a FIFO opened the
//! ordinary way blocks until a writer appears (once, a FIFO as the config hung a reload,
//! and with it SIGTERM), a device can be endless or have side effects on open, and a
//! directory reads as an obscure error. So the path is checked before it is opened, it
//! is opened with `O_NONBLOCK` (which makes opening a FIFO return at once), and the
//! opened descriptor is checked again in case the path was swapped in between.

use std::fs::{File, FileType, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Reads at most `cap` bytes of a regular file; a larger file, or a path that is not a
/// regular file (FIFO, device, directory, socket), is an error saying so.
pub fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let mut file = open_regular(path)?;
    let mut bytes = Vec::new();
    (&mut file).take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::other(format!("larger than {cap} bytes")));
    }
    Ok(bytes)
}

/// Opens a regular file for reading without ever blocking on the open.
fn open_regular(path: &Path) -> io::Result<File> {
    // Symbolic links are followed (Kubernetes mounts secrets through them).
    refuse_irregular(std::fs::metadata(path)?.file_type())?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    refuse_irregular(file.metadata()?.file_type())?;
    Ok(file)
}

/// An error for anything but a regular file, naming what it is.
fn refuse_irregular(kind: FileType) -> io::Result<()> {
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what}, not a regular file"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn regular_files_are_read_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_capped(&path, 5).unwrap(), b"12345");
        let e = read_capped(&path, 4).unwrap_err();
        assert!(e.to_string().contains("larger than 4 bytes"), "{e}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(read_capped(&link, 5).unwrap(), b"12345");
    }

    /// A FIFO with no writer, a directory and a device are refused at once.
    #[test]
    fn fifos_devices_and_directories_are_errors_not_hangs() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let started = Instant::now();
        for (path, what) in [
            (fifo.as_path(), "FIFO"),
            (dir.path(), "directory"),
            (Path::new("/dev/zero"), "character device"),
        ] {
            let e = read_capped(path, 1 << 20).unwrap_err();
            assert!(e.to_string().contains(what), "{}: {e}", path.display());
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
