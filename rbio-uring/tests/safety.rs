//! The kernel never writes into memory rbio has freed or handed out again.
//!
//! The device is a fresh pseudo-terminal master (`/dev/ptmx`): its reads wait in the kernel
//! until the test writes to the slave side, so the test decides when the kernel writes.
//!
//! - `mem::forget` of an engine with reads in flight leaks its buffers: the pool keeps them
//!   taken, and when the kernel later completes a read, the bytes land in that leaked memory,
//!   while fresh allocations made meanwhile (a new pool, a heap block, scribbled with a
//!   pattern) are untouched. The test drops its own pool handle first, so only the leak keeps
//!   the arena alive; under AddressSanitizer (see `.ci/run`) reading it after that would be
//!   reported as a use after free if the arena had been freed.
//! - Dropping an engine with reads in flight returns within `DROP_DRAIN_TIMEOUT` with every
//!   buffer back in the pool only because the kernel canceled the reads: bytes written to the
//!   slave afterwards reach no buffer and wait, whole, in the terminal for a plain `read`.
#![allow(unsafe_code)] // unlockpt, ptsname_r, poll, read and reads of the leaked arena

mod support;

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rbio_core::{BufferPool, Device, Engine, Op};
use rbio_uring::{RingFlags, UringEngine, DROP_DRAIN_TIMEOUT};
use support::within;

const MARKER: &[u8] = b"rbio-safety-marker-0123456789";
const BUFFER_COUNT: usize = 4;
const SCRIBBLE: u8 = 0x55;

/// A pseudo-terminal: the master as an rbio device, and its slave opened for writing.
struct Terminal {
    master: Arc<Device>,
    slave: File,
}

fn terminal() -> Terminal {
    let master = Device::open("/dev/ptmx").expect("open /dev/ptmx");
    let fd = master.file().as_raw_fd();
    // SAFETY: plain call on an open pseudo-terminal master descriptor; the result is checked.
    assert_eq!(unsafe { libc::unlockpt(fd) }, 0, "unlockpt");
    let mut name = [0u8; 128];
    // SAFETY: `name` is a live, writable buffer of the length passed.
    let rc = unsafe { libc::ptsname_r(fd, name.as_mut_ptr().cast(), name.len()) };
    assert_eq!(rc, 0, "ptsname_r");
    let len = name.iter().position(|&b| b == 0).expect("NUL-terminated");
    let path = std::str::from_utf8(&name[..len]).expect("ASCII path");
    let slave = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open the slave side");
    Terminal {
        master: Arc::new(master),
        slave,
    }
}

fn stuck_reads(pool: &BufferPool) -> Vec<Op> {
    (0..BUFFER_COUNT as u64)
        .map(|tag| {
            let mut buffer = pool.take().unwrap();
            buffer.as_mut_slice().fill(0);
            Op::read(tag, 0, buffer)
        })
        .collect()
}

/// Whether `len` bytes at `base` hold `needle`, read without forming a reference the kernel
/// could invalidate.
///
/// # Safety
/// `base..base + len` must be live, readable memory.
unsafe fn memory_holds(base: *const u8, len: usize, needle: &[u8]) -> bool {
    let bytes: Vec<u8> = (0..len)
        // SAFETY: the caller promises the range is live and readable.
        .map(|i| unsafe { std::ptr::read_volatile(base.add(i)) })
        .collect();
    bytes.windows(needle.len()).any(|window| window == needle)
}

/// With deferred task run (the default flags on this kernel) a read that waits for data is
/// finished by the task that owns the ring when it next enters the kernel, which a forgotten
/// engine never does: the buffers stay leaked and the kernel never writes. The cooperative and
/// plain rings finish it on their own, so these show where the kernel's write lands.
#[test]
fn forgotten_engine_leaks_its_buffers_and_the_kernel_writes_only_there() {
    for flags in [RingFlags::LADDER[1], RingFlags::NONE] {
        forget_with_reads_in_flight(flags);
    }
}

fn forget_with_reads_in_flight(flags: RingFlags) {
    let terminal = terminal();
    let pool = BufferPool::new(4096, BUFFER_COUNT, 4096).unwrap();
    let mut engine = UringEngine::builder(terminal.master.clone())
        .fixed_buffers(&pool)
        .no_op_timeout()
        .flag_ladder(vec![flags])
        .build()
        .unwrap();
    assert!(engine.flags().contains(flags) && !engine.flags().is_thread_bound());
    engine.submit(&mut stuck_reads(&pool));
    assert_eq!(engine.pending_count(), BUFFER_COUNT);
    std::mem::forget(engine);
    assert_eq!(
        pool.taken_count(),
        BUFFER_COUNT,
        "in-flight buffers stay taken"
    );
    assert!(
        pool.take().is_none(),
        "no in-flight buffer is handed out again"
    );
    let (arena, arena_len) = pool.arena_region();
    drop(pool); // from here only the forgotten engine keeps the arena alive

    // Fresh memory, scribbled: if the arena had been freed, these could reuse it.
    let fresh_pool = BufferPool::new(4096, 64, 4096).unwrap();
    let mut fresh: Vec<_> = std::iter::from_fn(|| fresh_pool.take()).collect();
    fresh
        .iter_mut()
        .for_each(|b| b.as_mut_slice().fill(SCRIBBLE));
    let heap = vec![SCRIBBLE; 4 << 20];

    std::io::Write::write_all(&mut &terminal.slave, MARKER).unwrap();
    // Nothing signals the kernel's write to a forgotten engine: look, under a deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    // SAFETY: the arena is leaked with the engine (never freed), so it stays readable.
    while !unsafe { memory_holds(arena, arena_len, MARKER) } {
        assert!(
            Instant::now() < deadline,
            "{flags}: the read never landed in the leaked buffer"
        );
        std::thread::yield_now();
    }
    assert!(fresh
        .iter()
        .all(|b| b.as_slice().iter().all(|&x| x == SCRIBBLE)));
    assert!(
        heap.iter().all(|&x| x == SCRIBBLE),
        "the kernel wrote into fresh memory"
    );
}

/// Reads what is waiting in the terminal master, within 10 s.
fn read_master(fd: RawFd, len: usize) -> Vec<u8> {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live `pollfd` for an open descriptor; the kernel writes only `revents`.
    let ready = unsafe { libc::poll(&mut pollfd, 1, 10_000) };
    assert_eq!(ready, 1, "nothing to read on the terminal master");
    let mut bytes = vec![0u8; len];
    // SAFETY: `bytes` is a live, writable buffer of `len` bytes.
    let read = unsafe { libc::read(fd, bytes.as_mut_ptr().cast(), len) };
    assert!(read >= 0, "read: {}", std::io::Error::last_os_error());
    bytes.truncate(read as usize);
    bytes
}

#[test]
fn dropped_engine_gives_buffers_back_only_once_the_kernel_let_go() {
    let terminal = terminal();
    let pool = BufferPool::new(4096, BUFFER_COUNT, 4096).unwrap();
    let master = terminal.master.clone();
    let drop_pool = pool.clone();
    let elapsed = within(
        "drop with reads in flight",
        Duration::from_secs(20),
        move || {
            let mut engine = UringEngine::builder(master)
                .fixed_buffers(&drop_pool)
                .no_op_timeout()
                .build()
                .unwrap();
            engine.submit(&mut stuck_reads(&drop_pool));
            let started = Instant::now();
            drop(engine);
            started.elapsed()
        },
    );
    assert!(elapsed < DROP_DRAIN_TIMEOUT, "drop took {elapsed:?}");
    assert_eq!(
        pool.taken_count(),
        0,
        "canceled reads give their buffers back"
    );

    // The same memory, handed out again and scribbled; then the terminal gets data. Had a
    // read still been in the kernel, the data would be in a buffer and not in the terminal.
    let mut again: Vec<_> = std::iter::from_fn(|| pool.take()).collect();
    assert_eq!(again.len(), BUFFER_COUNT);
    again
        .iter_mut()
        .for_each(|b| b.as_mut_slice().fill(SCRIBBLE));
    std::io::Write::write_all(&mut &terminal.slave, MARKER).unwrap();
    let read = read_master(terminal.master.file().as_raw_fd(), 4096);
    assert_eq!(
        read, MARKER,
        "every byte waited in the terminal: no read was left"
    );
    assert!(again
        .iter()
        .all(|b| b.as_slice().iter().all(|&x| x == SCRIBBLE)));
}
