//! A staging's new objects written as one pack instead of one file each.
//!
//! A step's staging writes ~11 objects: the blobs of the changed files and of the step's
//! record, and the trees down to the record's folder (`.codemachine/runs/<id>/steps/<n>/`).
//! As loose objects that is ~11 new files, and a new file is the dear part of writing on some
//! file systems: on ext4 without a journal each costs 100–500 µs finding a free inode, while
//! the bytes cost next to nothing. Held in memory while the staging writes them (libgit2's
//! mempack, ahead of the other backends), they go to disk as one pack: two new files, the
//! pack and its index. They are on disk before the index or a ref names them: [`Batch::flush`]
//! comes before the index is written, and a pack is in place only once its index is.
//!
//! Packs are merged as they build up, so a long run does not leave hundreds of them behind:
//! every lookup of an object a pack lacks reads that pack's index, and git's own `gc --auto`
//! repacks the whole repository once there are more than 50 (`gc.autoPackLimit`). Packs are
//! sorted into tiers by their number of objects (fewer than 8, fewer than 64, …); when a tier
//! holds [`MERGE_AT`] packs they become one pack of the next tier, so an object is written
//! again about once a tier, and at most ~7 packs a tier remain. Packs of [`MERGED_BELOW`]
//! objects or more (a clone's own pack) are left to git, as are packs git treats specially
//! (`.keep`, `.promisor`, cruft packs, bitmaps), and all packs once a multi-pack index exists.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Result;

/// Packs of one tier merged at once; the tiers are powers of it.
const MERGE_AT: usize = 8;

/// Packs of at least this many objects are never merged here.
const MERGED_BELOW: u64 = 4096;

/// The objects written through a repository, held in memory until [`Batch::flush`].
pub(super) struct Batch<'r> {
    repo: &'r git2::Repository,
    odb: &'r git2::Odb<'r>,
    held: git2::Mempack<'r>,
}

impl<'r> Batch<'r> {
    /// From now on, objects written through `repo` (whose object database `odb` is) stay in
    /// memory until flushed.
    pub(super) fn start(repo: &'r git2::Repository, odb: &'r git2::Odb<'r>) -> Result<Batch<'r>> {
        // Ahead of the loose (1) and packed (2) backends: libgit2 writes to the first.
        let held = odb.add_new_mempack_backend(1000)?;
        Ok(Batch { repo, odb, held })
    }

    /// Write `objects` (held, or on disk already) as one pack, then merge small packs when a
    /// tier is full; whatever else was held is dropped. The caller names what its index and
    /// tree refer to: libgit2 packs a mempack's commits only, with all they reach.
    pub(super) fn flush(&self, objects: &BTreeSet<git2::Oid>) -> Result<()> {
        if objects.is_empty() {
            self.held.reset()?;
            return Ok(());
        }
        let mut builder = self.repo.packbuilder()?;
        for id in objects {
            builder.insert_object(*id, None)?;
        }
        let mut pack = git2::Buf::new();
        builder.write_buf(&mut pack)?;
        write_pack(self.odb, &pack)?;
        self.held.reset()?;
        crate::env::crash::point("packed");
        // Merging only saves room and lookups: where it cannot be done, the packs stay as
        // they are, each whole.
        let _ = merge_small(self.repo, self.odb);
        Ok(())
    }
}

/// Index `pack` into the repository's pack folder: the pack under a temporary name, its
/// index, then the pack renamed into place.
fn write_pack(odb: &git2::Odb<'_>, pack: &[u8]) -> Result<()> {
    let mut writer = odb.packwriter()?;
    // The writer's own error says only "Write error"; libgit2's says why (a full disk).
    writer
        .write_all(pack)
        .map_err(|_| git2::Error::last_error(-1))?;
    writer.commit()?;
    Ok(())
}

/// A pack in the pack folder: its path without extension, and its number of objects.
#[derive(Debug, Clone, PartialEq)]
struct Pack {
    stem: PathBuf,
    objects: u64,
}

impl Pack {
    fn with(&self, ext: &str) -> PathBuf {
        self.stem.with_extension(ext)
    }

    /// Its tier: 0 below [`MERGE_AT`] objects, 1 below its square, and so on.
    fn tier(&self) -> u32 {
        self.objects.max(1).ilog(MERGE_AT as u64)
    }
}

/// The packs of `folder` git machine may merge (see the module's header); none when the
/// folder has a multi-pack index.
fn mergeable(folder: &Path) -> Vec<Pack> {
    // One read of the folder a staging: its names answer which files a pack has.
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let names: BTreeSet<std::ffi::OsString> = entries.flatten().map(|e| e.file_name()).collect();
    if names.contains(std::ffi::OsStr::new("multi-pack-index")) {
        return Vec::new();
    }
    let has = |stem: &Path, ext: &str| {
        stem.with_extension(ext)
            .file_name()
            .is_some_and(|n| names.contains(n))
    };
    let mut packs = Vec::new();
    for name in &names {
        let path = folder.join(name);
        if path.extension().is_none_or(|x| x != "idx") {
            continue;
        }
        let stem = path.with_extension("");
        let special = ["keep", "promisor", "mtimes", "bitmap"]
            .iter()
            .any(|x| has(&stem, x));
        if special || !has(&stem, "pack") {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        // A version 2 index: 1,072 bytes of header and fan-out and 40 of checksums, 28 an
        // object (name, CRC, offset). An estimate is enough to sort packs into tiers.
        let objects = meta.len().saturating_sub(1112) / 28;
        if objects < MERGED_BELOW {
            packs.push(Pack { stem, objects });
        }
    }
    packs
}

/// The lowest tier of `packs` that holds [`MERGE_AT`] packs, if any.
fn full_tier(packs: &[Pack]) -> Option<Vec<Pack>> {
    let top = packs.iter().map(Pack::tier).max()?;
    (0..=top)
        .map(|tier| {
            packs
                .iter()
                .filter(|p| p.tier() == tier)
                .cloned()
                .collect::<Vec<_>>()
        })
        .find(|tier| tier.len() >= MERGE_AT)
}

/// Merge the packs of the lowest full tier into one: the new pack is in place before any of
/// the old ones goes, so every object is always in some pack. Two processes merging the same
/// packs at once both write a whole pack before deleting anything.
fn merge_small(repo: &git2::Repository, odb: &git2::Odb<'_>) -> Result<()> {
    let folder = repo.commondir().join("objects/pack");
    let Some(merged) = full_tier(&mergeable(&folder)) else {
        return Ok(());
    };
    let mut builder = repo.packbuilder()?;
    for pack in &merged {
        let bytes = std::fs::read(pack.with("idx"))
            .map_err(|e| git2::Error::from_str(&format!("reading a pack index: {e}")))?;
        for id in names_in_index(&bytes)? {
            builder.insert_object(id, None)?;
        }
    }
    let mut pack = git2::Buf::new();
    builder.write_buf(&mut pack)?;
    write_pack(odb, &pack)?;
    crate::env::crash::point("packs-merged");
    for pack in &merged {
        // The index first: a reader that lists packs skips a pack without one.
        for ext in ["idx", "pack", "rev"] {
            let _ = std::fs::remove_file(pack.with(ext));
        }
    }
    Ok(())
}

/// The object names a pack index (version 1 or 2) lists.
fn names_in_index(idx: &[u8]) -> Result<Vec<git2::Oid>> {
    let bad = || git2::Error::from_str("a pack index git machine cannot read");
    let (fanout, names, stride) = if idx.starts_with(b"\xfftOc") {
        if idx.get(4..8) != Some(&[0, 0, 0, 2]) {
            return Err(bad().into());
        }
        (8, 8 + 1024, 20)
    } else {
        (0, 1024, 24)
    };
    let last = idx.get(fanout + 1020..fanout + 1024).ok_or_else(bad)?;
    let count = u32::from_be_bytes([last[0], last[1], last[2], last[3]]) as usize;
    // Version 1 puts each name after its 4-byte offset.
    let skip = stride - 20;
    (0..count)
        .map(|i| {
            let at = names + i * stride + skip;
            let name = idx.get(at..at + 20).ok_or_else(bad)?;
            Ok(git2::Oid::from_bytes(name)?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git_in(dir: &Path) -> Command {
        let mut cmd = Command::new("git");
        cmd.current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
        cmd
    }

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = git_in(dir).args(args).output().expect("git runs");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    }

    fn packs_in(repo: &git2::Repository) -> Vec<PathBuf> {
        let folder = repo.commondir().join("objects/pack");
        let mut found: Vec<PathBuf> = std::fs::read_dir(folder)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        found.retain(|p| p.extension().is_some_and(|x| x == "pack"));
        found.sort();
        found
    }

    fn loose_in(repo: &git2::Repository) -> usize {
        let objects = repo.commondir().join("objects");
        walkdir::WalkDir::new(&objects)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .filter(|e| {
                let parent = e.path().parent().and_then(Path::file_name);
                parent.is_some_and(|p| p.len() == 2)
            })
            .count()
    }

    fn blobs(repo: &git2::Repository, batch: &Batch<'_>, from: usize, n: usize) -> Vec<git2::Oid> {
        let ids: Vec<git2::Oid> = (from..from + n)
            .map(|i| repo.blob(format!("object {i}\n").as_bytes()).expect("blob"))
            .collect();
        batch.flush(&ids.iter().copied().collect()).expect("flush");
        ids
    }

    #[test]
    fn held_objects_go_to_disk_as_one_pack_that_git_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = git2::Repository::init(dir.path()).expect("init");
        let odb = repo.odb().expect("odb");
        let batch = Batch::start(&repo, &odb).expect("batch");
        let ids = blobs(&repo, &batch, 0, 5);
        assert_eq!(loose_in(&repo), 0, "no loose object");
        assert_eq!(packs_in(&repo).len(), 1);
        // Another process (git) and another handle both find every object.
        let other = git2::Repository::open(dir.path()).expect("open");
        for id in &ids {
            assert_eq!(
                git(dir.path(), &["cat-file", "-t", &id.to_string()]),
                "blob\n"
            );
            other.find_blob(*id).expect("found by another handle");
        }
        // Nothing named: no pack. What is held but not named is dropped.
        let dropped = repo.blob(b"not named").expect("blob");
        batch.flush(&BTreeSet::new()).expect("flush");
        blobs(&repo, &batch, 10, 2);
        assert_eq!(packs_in(&repo).len(), 2);
        assert!(
            other.find_blob(dropped).is_err(),
            "only what is named is written"
        );
        git(dir.path(), &["fsck", "--strict"]);
    }

    #[test]
    fn a_full_tier_becomes_one_pack_and_no_object_is_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = git2::Repository::init(dir.path()).expect("init");
        let odb = repo.odb().expect("odb");
        let batch = Batch::start(&repo, &odb).expect("batch");
        let mut ids = Vec::new();
        for step in 0..MERGE_AT - 1 {
            ids.extend(blobs(&repo, &batch, step * 3, 3));
        }
        assert_eq!(packs_in(&repo).len(), MERGE_AT - 1, "a tier short of full");
        // The eighth pack of three objects fills tier 0: one pack of 24 objects remains.
        ids.extend(blobs(&repo, &batch, 100, 3));
        let packs = packs_in(&repo);
        assert_eq!(packs.len(), 1, "{packs:?}");
        let listed = git(
            dir.path(),
            &["verify-pack", "-v", packs[0].to_str().unwrap()],
        );
        for id in &ids {
            assert!(listed.contains(&id.to_string()), "{id} kept");
        }
        let other = git2::Repository::open(dir.path()).expect("open");
        for id in &ids {
            other.find_blob(*id).expect("found after the merge");
        }
        // This handle had the old packs open: it still finds everything.
        for id in &ids {
            repo.find_blob(*id).expect("found by the merging handle");
        }
        git(dir.path(), &["fsck", "--strict"]);
    }

    #[test]
    fn kept_packs_and_any_with_a_multi_pack_index_are_left_to_git() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = git2::Repository::init(dir.path()).expect("init");
        let odb = repo.odb().expect("odb");
        let batch = Batch::start(&repo, &odb).expect("batch");
        for step in 0..MERGE_AT - 1 {
            blobs(&repo, &batch, step * 3, 3);
        }
        let kept = packs_in(&repo)[0].with_extension("keep");
        std::fs::write(&kept, "").expect("keep");
        blobs(&repo, &batch, 100, 3);
        assert_eq!(packs_in(&repo).len(), MERGE_AT, "a kept pack is not merged");
        std::fs::remove_file(&kept).expect("unkeep");
        let folder = repo.commondir().join("objects/pack");
        std::fs::write(folder.join("multi-pack-index"), "").expect("midx");
        blobs(&repo, &batch, 200, 3);
        assert_eq!(
            packs_in(&repo).len(),
            MERGE_AT + 1,
            "none once a midx exists"
        );
        std::fs::remove_file(folder.join("multi-pack-index")).expect("no midx");
        blobs(&repo, &batch, 300, 3);
        assert_eq!(packs_in(&repo).len(), 1, "then the ten of tier 0 are one");
    }

    #[test]
    fn packs_of_many_objects_are_left_to_git() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Only the sizes count here: an index of n objects is 1,112 + 28 n bytes.
        for (name, objects) in [("pack-small", MERGED_BELOW - 1), ("pack-big", MERGED_BELOW)] {
            let stem = dir.path().join(name);
            std::fs::write(stem.with_extension("pack"), "").expect("pack");
            let idx = std::fs::File::create(stem.with_extension("idx")).expect("idx");
            idx.set_len(1112 + 28 * objects).expect("size");
        }
        let found = mergeable(dir.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].objects, MERGED_BELOW - 1);
        std::fs::remove_file(dir.path().join("pack-small.pack")).expect("rm");
        assert!(
            mergeable(dir.path()).is_empty(),
            "an index without its pack"
        );
    }

    #[test]
    fn tiers_go_by_objects_and_the_lowest_full_one_is_merged() {
        let pack = |name: &str, objects| Pack {
            stem: PathBuf::from(name),
            objects,
        };
        assert_eq!(pack("a", 0).tier(), 0);
        assert_eq!(pack("a", 7).tier(), 0);
        assert_eq!(pack("a", 8).tier(), 1);
        assert_eq!(pack("a", 63).tier(), 1);
        assert_eq!(pack("a", 64).tier(), 2);
        let mut packs: Vec<Pack> = (0..7).map(|i| pack(&format!("s{i}"), 3)).collect();
        packs.extend((0..8).map(|i| pack(&format!("m{i}"), 20)));
        let full = full_tier(&packs).expect("tier 1 is full");
        assert!(full.iter().all(|p| p.objects == 20), "{full:?}");
        packs.push(pack("s7", 11));
        assert_eq!(full_tier(&packs).expect("full").len(), 9, "tier 1 again");
        packs.push(pack("s8", 2));
        let full = full_tier(&packs).expect("tier 0 is full");
        assert!(
            full.iter().all(|p| p.objects < 8),
            "the lowest first: {full:?}"
        );
        assert_eq!(full_tier(&packs[..7]), None);
    }

    #[test]
    fn pack_indexes_of_both_versions_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = git2::Repository::init(dir.path()).expect("init");
        let ids: Vec<git2::Oid> = (0..3)
            .map(|i| repo.blob(format!("v{i}").as_bytes()).expect("blob"))
            .collect();
        let list: String = ids.iter().map(|id| format!("{id}\n")).collect();
        for version in ["1", "2"] {
            let base = dir.path().join(format!("p{version}"));
            let mut child = git_in(dir.path())
                .args(["pack-objects", &format!("--index-version={version}")])
                .arg(&base)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("pack-objects");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(list.as_bytes())
                .expect("list");
            let out = child.wait_with_output().expect("wait");
            let hash = String::from_utf8(out.stdout).expect("utf-8");
            let idx =
                std::fs::read(format!("{}-{}.idx", base.display(), hash.trim())).expect("index");
            let mut names = names_in_index(&idx).expect("read");
            names.sort();
            let mut want = ids.clone();
            want.sort();
            assert_eq!(names, want, "version {version}");
        }
        assert!(names_in_index(b"\xfftOc\0\0\0\x03").is_err());
        assert!(names_in_index(b"short").is_err());
    }
}
