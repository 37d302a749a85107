//! RocksDB storage for one QLOCK replica: the consensus safety state, the
//! committed log, request payloads, snapshots and the lockchain, each in a
//! column family of one database. The only crate besides `node` that touches
//! the disk.

use std::path::Path;

/// The column families of a replica's database.
pub const COLUMN_FAMILIES: [&str; 6] = [
    "safety",
    "log",
    "payloads",
    "snapshots",
    "lockchain",
    "receipts",
];

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// RocksDB reported an error (IO error, disk full, corruption).
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
}

/// A replica's database.
pub struct Store {
    db: rocksdb::DB,
}

impl Store {
    /// Opens (creating if missing) the database at `path` with every column
    /// family.
    pub fn open(path: &Path) -> Result<Store, StorageError> {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let db = rocksdb::DB::open_cf(&options, path, COLUMN_FAMILIES)?;
        Ok(Store { db })
    }

    /// The column families the database has.
    pub fn column_families(&self) -> Vec<String> {
        COLUMN_FAMILIES
            .iter()
            .filter(|name| self.db.cf_handle(name).is_some())
            .map(|name| name.to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_with_every_column_family_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.column_families().len(), COLUMN_FAMILIES.len());
    }
}
