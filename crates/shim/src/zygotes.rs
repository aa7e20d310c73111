//! runwasi's zygotes hold memory of their own. A pod is four processes: the shim process,
//! a global zygote it forks at start (single-threaded, so it can fork safely later), one
//! zygote per container forked from that one (it ran youki's set-up of the container and
//! waits to signal, wait for and delete it), and the container's process. The zygotes
//! serve the odd request and are otherwise idle, but each keeps the code it ran mapped:
//! 4 and 8 MiB of resident memory in a settled hello pod (`benches/shim.sh`).
//!
//! When the shim process releases its own pages, [`release_zygote_pages`] does the same
//! for them: the global zygote runs the release itself (runwasi lets the shim run a
//! function there); a container's zygote cannot be reached that way, so its file pages
//! that no other process maps are paged out from here (`process_madvise`, which needs
//! the privileges a shim has). Either way a page needed later faults back in.

// runwasi's `zygote` crate as its shim library re-exports it: the same global zygote.
use containerd_shimkit::zygote::Zygote;
use std::sync::{Mutex, OnceLock};

/// The global zygote's resident memory after its last release, to release again only
/// once runwasi's calls into it (a container's creation) faulted enough back in.
static GLOBAL_AFTER_RELEASE: Mutex<Option<u64>> = Mutex::new(None);

/// How much more resident memory makes a zygote's release worth its cost.
const GREW_ENOUGH: u64 = 512 * 1024;

/// Releases what the zygotes of this shim process hold mapped: the global zygote runs the
/// release of its code and read-only data (and free heap) itself; then the file pages
/// only one zygote maps (what a container's zygote ran, what the global one faulted back
/// to answer) are paged out from here. For the shim process's idle watcher; never fails,
/// only logs at debug.
pub fn release_zygote_pages() {
    release_global_zygote();
    let mut children = children_of(std::process::id());
    children.sort_unstable();
    children.dedup();
    for pid in children.into_iter().filter(|&pid| is_zygote(pid)) {
        match page_out_file_pages(pid) {
            Ok(bytes) => log::debug!("paged out {bytes} bytes of zygote {pid}'s file mappings"),
            Err(error) => log::debug!("cannot page out zygote {pid}'s file mappings: {error}"),
        }
    }
}

/// Runs the release in the global zygote, the first time and whenever it grew since.
fn release_global_zygote() {
    static PID: OnceLock<Option<u32>> = OnceLock::new();
    let zygote = Zygote::global();
    // Asked once: each call into the zygote runs (and maps back) code there.
    let Some(pid) = *PID.get_or_init(|| zygote.try_run(|()| std::process::id(), ()).ok()) else {
        return;
    };
    let mut after = GLOBAL_AFTER_RELEASE
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let Some(resident) = resident_bytes(pid) else {
        return;
    };
    if after.is_some_and(|after| resident < after + GREW_ENOUGH) {
        return;
    }
    let released = zygote.try_run(
        |()| wisp_engine::release_read_only_pages() as u64 + wisp_engine::release_free_heap(),
        (),
    );
    match released {
        Ok(bytes) => log::debug!("global zygote {pid}: released {bytes} bytes"),
        Err(error) => log::debug!("cannot release the global zygote's pages: {error}"),
    }
    *after = resident_bytes(pid);
}

/// The process's resident memory in bytes (`/proc/<pid>/statm`'s second field).
fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The direct children of `pid` (the zygotes are the shim's: runwasi forks each
/// container's zygote as a sibling of the global one).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|children| {
            children
                .split_whitespace()
                .filter_map(|child| child.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// A zygote: a single-threaded process running this same binary. A container's process
/// runs it too, but with the runtime's threads (before it starts it is youki's waiting
/// init process, which paging out does not harm either).
fn is_zygote(pid: u32) -> bool {
    let same_binary = match (
        std::fs::read_link(format!("/proc/{pid}/exe")),
        std::fs::read_link("/proc/self/exe"),
    ) {
        (Ok(theirs), Ok(ours)) => theirs == ours,
        _ => false,
    };
    let single_threaded = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Threads:"))
                .map(|threads| threads.trim() == "1")
        })
        .unwrap_or(false);
    same_binary && single_threaded
}

/// The read-only, file-backed mappings of `pid` (code, constant data), page-aligned.
fn read_only_file_mappings(pid: u32) -> std::io::Result<Vec<(usize, usize)>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    Ok(maps
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let permissions = fields.next()?;
            let path = fields.nth(3)?;
            if permissions.contains('w') || !path.starts_with('/') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            Some((start, end - start))
        })
        .collect())
}

/// Asks the kernel to reclaim the pages of `pid`'s read-only file mappings that no other
/// process maps (`MADV_PAGEOUT` skips shared ones); returns how many bytes were advised.
/// Clean file pages are dropped, nothing is lost: a later access reads them back.
#[allow(unsafe_code)]
fn page_out_file_pages(pid: u32) -> std::io::Result<usize> {
    let mappings = read_only_file_mappings(pid)?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if pidfd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just returned to us and is owned here only.
    let pidfd =
        unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(pidfd as i32) };
    let mut advised = 0;
    // The kernel takes at most IOV_MAX (1024) ranges a call.
    for batch in mappings.chunks(512) {
        let iovecs: Vec<libc::iovec> = batch
            .iter()
            .map(|&(start, len)| libc::iovec {
                iov_base: start as *mut libc::c_void,
                iov_len: len,
            })
            .collect();
        // SAFETY: the iovecs describe ranges in the other process, which the kernel only
        // reads as addresses; the array itself lives until the call returns.
        let done = unsafe {
            libc::syscall(
                libc::SYS_process_madvise,
                std::os::fd::AsRawFd::as_raw_fd(&pidfd),
                iovecs.as_ptr(),
                iovecs.len(),
                libc::MADV_PAGEOUT,
                0,
            )
        };
        if done < 0 {
            return Err(std::io::Error::last_os_error());
        }
        advised += done as usize;
    }
    Ok(advised)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_maps_its_binary_read_only() {
        let mappings = read_only_file_mappings(std::process::id()).unwrap();
        let code = read_only_file_mappings as *const () as usize;
        assert!(
            mappings
                .iter()
                .any(|&(start, len)| (start..start + len).contains(&code)),
            "{mappings:?}"
        );
    }

    /// A child of this process running the same binary is found among its children, its
    /// read-only file pages are paged out, and it keeps working afterwards.
    #[test]
    fn a_single_threaded_child_is_paged_out() {
        let mut child = std::process::Command::new("/proc/self/exe")
            .args([
                "--exact",
                "zygotes::tests::helper_waits_on_stdin",
                "--ignored",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        // Long enough for the child to have mapped and run its code.
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(children_of(std::process::id()).contains(&pid));
        let advised = page_out_file_pages(pid).unwrap();
        assert!(
            advised > 0,
            "nothing advised: {:?}",
            read_only_file_mappings(pid)
        );
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
    }

    #[test]
    #[ignore = "the child of a_single_threaded_child_is_paged_out"]
    fn helper_waits_on_stdin() {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
    }

    #[test]
    fn the_test_process_is_not_a_zygote() {
        // The harness runs tests on threads: more than one.
        assert!(!is_zygote(std::process::id()));
    }
}
