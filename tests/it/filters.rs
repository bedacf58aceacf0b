//! --cgroupmap and --mntnsmap with maps the tests create and pin themselves,
//! as a user would with bpftool.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;

use crate::common::{profile, profile_ok, require_bpf, Workload};

/// A private bpffs mount with one pinned hash map of u64 -> u64, holding `keys`.
struct PinnedSet {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl PinnedSet {
    fn new(keys: &[u64]) -> PinnedSet {
        let dir = tempfile::tempdir().unwrap();
        run("mount", &["-t", "bpf", "bpf", dir.path().to_str().unwrap()]);
        let path = dir.path().join("set");
        let p = path.to_str().unwrap();
        run(
            "bpftool",
            &[
                "map", "create", p, "type", "hash", "key", "8", "value", "8", "entries", "64",
                "name", "rsp_set",
            ],
        );
        for k in keys {
            let mut args = vec![
                "map".to_string(),
                "update".into(),
                "pinned".into(),
                p.into(),
                "key".into(),
            ];
            args.extend(k.to_ne_bytes().iter().map(|b| b.to_string()));
            args.push("value".into());
            args.extend([0u8; 8].iter().map(|b| b.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run("bpftool", &args);
        }
        PinnedSet { dir, path }
    }
}

impl Drop for PinnedSet {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where cgroup v2 is mounted (bpf_get_current_cgroup_id is a v2 id).
fn cgroup2_root() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    })
}

struct Cgroup(PathBuf);

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

#[test]
fn cgroupmap_keeps_only_listed_cgroups() {
    require_bpf!();
    let root = cgroup2_root().expect("a cgroup2 mount is needed");
    let inside = Workload::start("mix", 5.0, &[]);
    let outside = Workload::start("mix", 5.0, &[]);
    let cg = Cgroup(root.join(format!("rs-profile-test-{}", std::process::id())));
    fs::create_dir_all(&cg.0).unwrap();
    fs::write(cg.0.join("cgroup.procs"), inside.pid.to_string()).unwrap();
    // A cgroup v2 id is its directory's inode number.
    let id = fs::metadata(&cg.0).unwrap().ino();
    let set = PinnedSet::new(&[id]);
    let pids = format!("{},{}", inside.pid, outside.pid);
    let text = profile_ok(&["--cgroupmap", set.path.to_str().unwrap(), "-p", &pids, "2"]);
    assert!(text.contains(&format!("({})", inside.pid)), "{text}");
    assert!(!text.contains(&format!("({})", outside.pid)), "{text}");
    // The cgroup can only be removed once its process is gone.
    drop(inside);
    drop(cg);
}

fn mntns_inode(pid: u32) -> u64 {
    let link = fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    let s = link.to_string_lossy();
    s.trim_start_matches("mnt:[")
        .trim_end_matches(']')
        .parse()
        .unwrap()
}

#[test]
fn mntnsmap_keeps_only_listed_namespaces() {
    require_bpf!();
    let inside = Workload::start("mix", 5.0, &["unshare", "-m"]);
    let outside = Workload::start("mix", 5.0, &[]);
    let ns = mntns_inode(inside.pid);
    assert_ne!(ns, mntns_inode(outside.pid));
    let set = PinnedSet::new(&[ns]);
    let pids = format!("{},{}", inside.pid, outside.pid);
    let text = profile_ok(&["--mntnsmap", set.path.to_str().unwrap(), "-p", &pids, "2"]);
    assert!(text.contains(&format!("({})", inside.pid)), "{text}");
    assert!(!text.contains(&format!("({})", outside.pid)), "{text}");
}

#[test]
fn a_map_of_the_wrong_kind_is_refused() {
    require_bpf!();
    let dir = tempfile::tempdir().unwrap();
    run("mount", &["-t", "bpf", "bpf", dir.path().to_str().unwrap()]);
    let p = dir.path().join("arr");
    run(
        "bpftool",
        &[
            "map",
            "create",
            p.to_str().unwrap(),
            "type",
            "array",
            "key",
            "4",
            "value",
            "8",
            "entries",
            "4",
            "name",
            "rsp_arr",
        ],
    );
    let out = profile(&["--cgroupmap", p.to_str().unwrap(), "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = fs::remove_file(&p);
    let _ = Command::new("umount").arg(dir.path()).status();
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("a hash map with 8-byte keys is needed"),
        "{stderr}"
    );
}
