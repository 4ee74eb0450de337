//! A stalled device for tests: a small FUSE file system, served by this process, holding one
//! file whose chosen byte ranges answer reads only after a delay, like a disk stuck on some
//! sectors, and whose every read can wait a fixed latency, like a slow remote disk. It speaks the kernel's FUSE protocol itself over `/dev/fuse` and is mounted with
//! mount(8), the device fd passed as the helper's standard input, so it needs root (as CI
//! runs) but no FUSE library, no helper package and no `unsafe`.
//!
//! Reads go straight to the server (the file is opened with `FOPEN_DIRECT_IO`): each `pread`
//! of the image is one FUSE read at the same offset, never merged by readahead.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The inode of the mount's root directory and of the one file in it.
const ROOT_INODE: u64 = 1;
const FILE_INODE: u64 = 2;
/// The file's name in the mount.
pub const FILE_NAME: &str = "image";

// Opcodes and flags of the FUSE protocol (include/uapi/linux/fuse.h).
const FUSE_LOOKUP: u32 = 1;
const FUSE_FORGET: u32 = 2;
const FUSE_GETATTR: u32 = 3;
const FUSE_OPEN: u32 = 14;
const FUSE_READ: u32 = 15;
const FUSE_STATFS: u32 = 17;
const FUSE_RELEASE: u32 = 18;
const FUSE_FLUSH: u32 = 25;
const FUSE_INIT: u32 = 26;
const FUSE_OPENDIR: u32 = 27;
const FUSE_READDIR: u32 = 28;
const FUSE_RELEASEDIR: u32 = 29;
const FUSE_INTERRUPT: u32 = 36;
const FUSE_DESTROY: u32 = 38;
const FUSE_BATCH_FORGET: u32 = 42;
const FUSE_ASYNC_READ: u32 = 1;
const FOPEN_DIRECT_IO: u32 = 1;
const IN_HEADER_BYTES: usize = 40;
const OUT_HEADER_BYTES: usize = 16;
const MAX_WRITE_BYTES: u32 = 128 << 10;

/// Byte ranges whose reads wait, and for how long.
#[derive(Clone, Debug)]
pub struct Stalls {
    /// A read that starts in one of these waits.
    pub ranges: Vec<Range<u64>>,
    /// How long it waits before it is answered (unless the file system is dropped first).
    pub delay: Duration,
    /// How long every other read waits before it is answered: the device's latency. Reads
    /// wait side by side, so a reader with more reads in flight gets more done.
    pub latency: Duration,
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Reads answered at once.
    pub reads: AtomicU64,
    /// Reads held back by a stall.
    pub stalled_reads: AtomicU64,
}

/// A mounted stalled device; unmounted (lazily) and its held reads answered when dropped.
pub struct StallFs {
    mountpoint: tempfile::TempDir,
    /// Opened when the file system is dropped: held reads are answered at once.
    gate: Arc<(Mutex<bool>, Condvar)>,
    seen: Arc<Seen>,
    server: Option<JoinHandle<()>>,
    /// Answers the reads held for the latency, in the order they came.
    delayer: Option<JoinHandle<()>>,
}

impl StallFs {
    /// Serves `image` through a new mount, stalling reads as `stalls` says.
    ///
    /// # Panics
    /// If `/dev/fuse` cannot be opened or the mount fails (the message says why).
    pub fn mount(image: &Path, stalls: Stalls) -> StallFs {
        let backing = File::open(image).expect("open the backing image");
        let size_bytes = backing.metadata().expect("stat the backing image").len();
        let device = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .expect("open /dev/fuse");
        let mountpoint = tempfile::tempdir().expect("mount point");
        let options = "fd=0,rootmode=40000,user_id=0,group_id=0,allow_other";
        // mount(8) without helpers (-i) makes the mount(2) call; its standard input is our
        // /dev/fuse, which the kernel takes as the connection (fd=0).
        let mounted = Command::new("mount")
            .args([
                "-i",
                "-t",
                "fuse.rbio-stallfs",
                "-o",
                options,
                "rbio-stallfs",
            ])
            .arg(mountpoint.path())
            .stdin(device.try_clone().expect("dup /dev/fuse"))
            .stdout(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("run mount(8) (Debian's mount package): {error}"));
        assert!(
            mounted.status.success(),
            "mount fuse at {}: {}",
            mountpoint.path().display(),
            String::from_utf8_lossy(&mounted.stderr)
        );
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let seen = Arc::new(Seen::default());
        let (delayed, delayed_receiver) = mpsc::channel();
        let delayer = {
            let gate = gate.clone();
            std::thread::spawn(move || answer_when_due(&gate, delayed_receiver))
        };
        let server = Server {
            delayed,
            device: Arc::new(device),
            backing: Arc::new(backing),
            size_bytes,
            stalls,
            gate: gate.clone(),
            seen: seen.clone(),
        };
        let server = std::thread::spawn(move || server.run());
        StallFs {
            mountpoint,
            gate,
            seen,
            server: Some(server),
            delayer: Some(delayer),
        }
    }

    /// The served file's path.
    pub fn path(&self) -> PathBuf {
        self.mountpoint.path().join(FILE_NAME)
    }

    /// What the server saw so far.
    pub fn seen(&self) -> &Seen {
        &self.seen
    }
}

impl Drop for StallFs {
    fn drop(&mut self) {
        let (open, opened) = &*self.gate;
        *open.lock().unwrap() = true;
        opened.notify_all();
        // Lazy: the kernel detaches the mount now and ends the connection, which ends the
        // server's read loop.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.mountpoint.path())
            .status();
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
        // The server's end of the queue went with it: the delayer answers what is left, at
        // once (the gate is open), and ends.
        if let Some(delayer) = self.delayer.take() {
            let _ = delayer.join();
        }
    }
}

/// The server thread's state.
struct Server {
    /// Reads held for the latency, with when each is due.
    delayed: mpsc::Sender<(Instant, Reply, u64, usize)>,
    device: Arc<File>,
    backing: Arc<File>,
    size_bytes: u64,
    stalls: Stalls,
    gate: Arc<(Mutex<bool>, Condvar)>,
    seen: Arc<Seen>,
}

/// One request's header fields that replies need.
struct Request<'a> {
    opcode: u32,
    unique: u64,
    nodeid: u64,
    body: &'a [u8],
}

impl Server {
    /// Reads requests until the connection ends (unmount), answering each.
    fn run(self) {
        let mut buffer = vec![0u8; MAX_WRITE_BYTES as usize + 64 * 1024];
        loop {
            let len = match (&*self.device).read(&mut buffer) {
                Ok(len) => len,
                // ENOENT: a request was interrupted before we read it; try again.
                Err(error) if error.raw_os_error() == Some(2) => continue,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                // ENODEV: unmounted.
                Err(_) => return,
            };
            if len < IN_HEADER_BYTES {
                return;
            }
            let message = &buffer[..len];
            let request = Request {
                opcode: u32_at(message, 4),
                unique: u64_at(message, 8),
                nodeid: u64_at(message, 16),
                body: &message[IN_HEADER_BYTES..],
            };
            self.answer(&request);
        }
    }

    fn answer(&self, request: &Request<'_>) {
        const ENOENT: i32 = 2;
        const ENOSYS: i32 = 38;
        match request.opcode {
            FUSE_INIT => self.reply(request.unique, 0, &self.init_out(request.body)),
            FUSE_LOOKUP => {
                let name = request.body.split(|&b| b == 0).next().unwrap_or_default();
                if request.nodeid == ROOT_INODE && name == FILE_NAME.as_bytes() {
                    let mut out = Vec::with_capacity(128);
                    out.extend_from_slice(&FILE_INODE.to_ne_bytes()); // nodeid
                    out.extend_from_slice(&0u64.to_ne_bytes()); // generation
                    out.extend_from_slice(&3600u64.to_ne_bytes()); // entry_valid
                    out.extend_from_slice(&3600u64.to_ne_bytes()); // attr_valid
                    out.extend_from_slice(&[0u8; 8]); // their nanoseconds
                    out.extend_from_slice(&self.attr(FILE_INODE));
                    self.reply(request.unique, 0, &out);
                } else {
                    self.reply(request.unique, -ENOENT, &[]);
                }
            }
            FUSE_GETATTR => {
                let mut out = Vec::with_capacity(104);
                out.extend_from_slice(&3600u64.to_ne_bytes()); // attr_valid
                out.extend_from_slice(&[0u8; 8]); // nanoseconds, padding
                out.extend_from_slice(&self.attr(request.nodeid));
                self.reply(request.unique, 0, &out);
            }
            FUSE_OPEN | FUSE_OPENDIR => {
                let flags = if request.opcode == FUSE_OPEN {
                    FOPEN_DIRECT_IO
                } else {
                    0
                };
                let mut out = Vec::with_capacity(16);
                out.extend_from_slice(&0u64.to_ne_bytes()); // fh
                out.extend_from_slice(&flags.to_ne_bytes());
                out.extend_from_slice(&0u32.to_ne_bytes());
                self.reply(request.unique, 0, &out);
            }
            FUSE_READ => self.read(request),
            FUSE_STATFS => {
                let mut out = vec![0u8; 80];
                out[40..44].copy_from_slice(&4096u32.to_ne_bytes()); // bsize
                out[44..48].copy_from_slice(&255u32.to_ne_bytes()); // namelen
                out[48..52].copy_from_slice(&4096u32.to_ne_bytes()); // frsize
                self.reply(request.unique, 0, &out);
            }
            // An empty directory listing, and the calls that need only a success.
            FUSE_READDIR | FUSE_RELEASE | FUSE_RELEASEDIR | FUSE_FLUSH | FUSE_DESTROY => {
                self.reply(request.unique, 0, &[]);
            }
            // No reply: the kernel expects none. An interrupted read stays stuck, as on a
            // device that does not answer.
            FUSE_FORGET | FUSE_BATCH_FORGET | FUSE_INTERRUPT => {}
            _ => self.reply(request.unique, -ENOSYS, &[]),
        }
    }

    /// The INIT reply (`fuse_init_out`, 64 bytes): protocol 7.31, asynchronous reads.
    fn init_out(&self, body: &[u8]) -> Vec<u8> {
        let max_readahead = u32_at(body, 8);
        let mut out = vec![0u8; 64];
        out[0..4].copy_from_slice(&7u32.to_ne_bytes());
        out[4..8].copy_from_slice(&31u32.to_ne_bytes());
        out[8..12].copy_from_slice(&max_readahead.to_ne_bytes());
        out[12..16].copy_from_slice(&FUSE_ASYNC_READ.to_ne_bytes());
        out[16..18].copy_from_slice(&64u16.to_ne_bytes()); // max_background
        out[18..20].copy_from_slice(&48u16.to_ne_bytes()); // congestion_threshold
        out[20..24].copy_from_slice(&MAX_WRITE_BYTES.to_ne_bytes());
        out[24..28].copy_from_slice(&1u32.to_ne_bytes()); // time_gran
        out
    }

    /// `fuse_attr` (88 bytes) of the root directory or the file.
    fn attr(&self, inode: u64) -> Vec<u8> {
        let (size_bytes, mode, nlink) = if inode == FILE_INODE {
            (self.size_bytes, 0o100_644u32, 1u32)
        } else {
            (0, 0o040_755u32, 2u32)
        };
        let mut out = vec![0u8; 88];
        out[0..8].copy_from_slice(&inode.to_ne_bytes());
        out[8..16].copy_from_slice(&size_bytes.to_ne_bytes());
        out[16..24].copy_from_slice(&size_bytes.div_ceil(512).to_ne_bytes());
        out[60..64].copy_from_slice(&mode.to_ne_bytes());
        out[64..68].copy_from_slice(&nlink.to_ne_bytes());
        out[80..84].copy_from_slice(&4096u32.to_ne_bytes()); // blksize
        out
    }

    /// Answers a read from the backing image, at once or, for a stalled range, from a thread
    /// of its own once the delay has passed (or the file system is dropped).
    fn read(&self, request: &Request<'_>) {
        let offset_bytes = u64_at(request.body, 8);
        let len_bytes = u32_at(request.body, 16) as usize;
        let stalled = self
            .stalls
            .ranges
            .iter()
            .any(|range| range.contains(&offset_bytes));
        let reply = Reply {
            device: self.device.clone(),
            backing: self.backing.clone(),
            unique: request.unique,
        };
        if !stalled {
            self.seen.reads.fetch_add(1, Ordering::Relaxed);
            if self.stalls.latency.is_zero() {
                reply.send_read(offset_bytes, len_bytes);
            } else {
                let due = Instant::now() + self.stalls.latency;
                // The delayer ends only after the server: the queue is open.
                let _ = self.delayed.send((due, reply, offset_bytes, len_bytes));
            }
            return;
        }
        self.seen.stalled_reads.fetch_add(1, Ordering::Relaxed);
        let (gate, until) = (self.gate.clone(), Instant::now() + self.stalls.delay);
        std::thread::spawn(move || {
            let (open, opened) = &*gate;
            let mut open = open.lock().unwrap();
            // The delay is the simulated device's latency; the gate ends it early.
            while !*open && Instant::now() < until {
                let left = until.saturating_duration_since(Instant::now());
                open = opened.wait_timeout(open, left).unwrap().0;
            }
            drop(open);
            reply.send_read(offset_bytes, len_bytes);
        });
    }

    fn reply(&self, unique: u64, error: i32, payload: &[u8]) {
        send(&self.device, unique, error, payload);
    }
}

/// Answers each queued read once it is due (or at once when the gate opens), in queue order:
/// the latency is the same for every read, so the order of arrival is the order of due times.
fn answer_when_due(
    gate: &(Mutex<bool>, Condvar),
    queue: mpsc::Receiver<(Instant, Reply, u64, usize)>,
) {
    for (due, reply, offset_bytes, len_bytes) in queue {
        let (open, opened) = gate;
        let mut open = open.lock().unwrap();
        // The wait is the simulated device's latency; the gate ends it early.
        while !*open && Instant::now() < due {
            let left = due.saturating_duration_since(Instant::now());
            open = opened.wait_timeout(open, left).unwrap().0;
        }
        drop(open);
        reply.send_read(offset_bytes, len_bytes);
    }
}

/// What answering one read needs, movable to the thread that holds it back.
struct Reply {
    device: Arc<File>,
    backing: Arc<File>,
    unique: u64,
}

impl Reply {
    fn send_read(&self, offset_bytes: u64, len_bytes: usize) {
        let mut data = vec![0u8; len_bytes];
        let mut done_bytes = 0;
        while done_bytes < len_bytes {
            match self
                .backing
                .read_at(&mut data[done_bytes..], offset_bytes + done_bytes as u64)
            {
                Ok(0) | Err(_) => break,
                Ok(read_bytes) => done_bytes += read_bytes,
            }
        }
        data.truncate(done_bytes);
        send(&self.device, self.unique, 0, &data);
    }
}

/// Writes one reply: the out header, then the payload, in one write as the protocol wants.
/// A reply to a request the kernel gave up on (unmounted) fails harmlessly.
fn send(device: &File, unique: u64, error: i32, payload: &[u8]) {
    let len = (OUT_HEADER_BYTES + payload.len()) as u32;
    let mut message = Vec::with_capacity(len as usize);
    message.extend_from_slice(&len.to_ne_bytes());
    message.extend_from_slice(&error.to_ne_bytes());
    message.extend_from_slice(&unique.to_ne_bytes());
    message.extend_from_slice(payload);
    let _ = (&*device).write(&message);
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}
