//! The volume a directory lives on: how much room it has. Used before a
//! take (pre-flight), while it records (the disk guard) and by retention.

use std::path::Path;

use nix::sys::statvfs::statvfs;

/// Free and total bytes of the volume holding `dir`.
pub fn space(dir: &Path) -> std::io::Result<(u64, u64)> {
    let s = statvfs(dir).map_err(std::io::Error::from)?;
    let frag = s.fragment_size() as u64;
    Ok((s.blocks_available() as u64 * frag, s.blocks() as u64 * frag))
}
