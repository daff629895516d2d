//! Owner-only modes for everything the server keeps on disk: the database
//! and its journals, media and audit keys are readable by no other local
//! user. New directories are created 0700 and files 0600 whatever the
//! umask; at start-up, group and other access is removed from what an older
//! version (or an operator's `cp`) left readable.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;
const GROUP_AND_OTHER: u32 = 0o077;

/// A path whose mode was tightened, with the mode it had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tightened {
    pub path: PathBuf,
    pub was: u32,
}

/// Creates `path` (and missing parents) as 0700 directories.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Creates an empty `path` with mode 0600 unless it exists. An empty file is
/// a valid empty SQLite database, and SQLite gives the `-wal`, `-shm` and
/// `-journal` files it creates later the database file's mode.
pub fn create_private_file(path: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to `path` (created with mode 0600, or truncated) and
/// syncs it to disk.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Removes group and other access from `path` if it has any; a missing path
/// or a symbolic link (whose target may not be ours) is left alone.
pub fn tighten(path: &Path) -> io::Result<Option<Tightened>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mode = meta.permissions().mode() & 0o7777;
    if meta.file_type().is_symlink() || mode & GROUP_AND_OTHER == 0 {
        return Ok(None);
    }
    // Owner bits are kept as they are: they are nobody else's business.
    let tight = mode & !GROUP_AND_OTHER;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(tight))?;
    Ok(Some(Tightened {
        path: path.to_owned(),
        was: mode,
    }))
}

/// [`tighten`] on `root` and everything below it, without following links.
pub fn tighten_tree(root: &Path) -> io::Result<Vec<Tightened>> {
    let mut tightened = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Removed meanwhile (a finished upload's temporary file).
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        tightened.extend(tighten(&path)?);
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(tightened)
}

/// The SQLite database at `db` and the journals beside it.
pub fn sqlite_files(db: &Path) -> Vec<PathBuf> {
    let mut files = vec![db.to_owned()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    files
}

/// One log line for what was tightened (media trees can be large, so only
/// the first few paths are named).
pub fn log_tightened(tightened: &[Tightened]) {
    const NAMED: usize = 10;
    if tightened.is_empty() {
        return;
    }
    let named: Vec<String> = tightened
        .iter()
        .take(NAMED)
        .map(|t| format!("{} (was {:o})", t.path.display(), t.was))
        .collect();
    tracing::warn!(
        count = tightened.len(),
        paths = %named.join(", "),
        more = tightened.len().saturating_sub(NAMED),
        "removed group and other access from server files (now 0700 directories, 0600 files)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn new_dirs_and_files_are_private_whatever_the_umask_allows() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        let file = dir.join("db");
        create_private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        // An existing file is neither truncated nor an error.
        std::fs::write(&file, b"x").unwrap();
        create_private_file(&file).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"x");
    }

    #[test]
    fn a_tree_loses_group_and_other_access_and_links_are_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let sub = root.path().join("media/ab");
        std::fs::create_dir_all(&sub).unwrap();
        let file = sub.join("abcdef");
        std::fs::write(&file, b"x").unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
        let media = root.path().join("media");
        for (path, m) in [
            (root.path(), 0o755),
            (&media, 0o755),
            (&sub, 0o755),
            (&file, 0o644),
        ] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).unwrap();
        }
        let tightened = tighten_tree(root.path()).unwrap();
        assert_eq!(tightened.len(), 4, "{tightened:?}"); // root, media, ab, the file
        assert_eq!(mode(root.path()), 0o700);
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(outside.path()), 0o644, "a link's target is not ours");
        assert!(tighten_tree(root.path()).unwrap().is_empty());
    }
}
