//! The serial engine: one synchronous `pread`/`pwrite` after another, the reference behaviour.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Instant;

use crate::blocking;
use crate::completion::Completion;
use crate::device::Device;
use crate::engine::{Capabilities, Engine, Wait};
use crate::op::Op;
use crate::ready::Readiness;

/// How many operations one `reap` performs at most, so a caller polling several engines is
/// not held up by a long queue.
pub const SERIAL_REAP_OPS_MAX: usize = 64;

/// Performs operations one at a time, in submission order, inside `reap`.
///
/// Every other engine is tested against it and every benchmark compares with it. A reap
/// performs at least one operation (so that progress never depends on waiting) and stops at
/// its deadline after that. It has no operation timeout: a `pread` the device never answers
/// blocks the reap that made it. Use an engine with a timeout (posix, uring) on devices that
/// may stop answering.
#[derive(Debug)]
pub struct SerialEngine {
    device: Arc<Device>,
    queued: VecDeque<Op>,
    refused: Vec<Completion>,
    readiness: Readiness,
}

impl SerialEngine {
    /// A serial engine for `device`.
    ///
    /// # Errors
    /// The error of creating its readiness eventfd.
    pub fn new(device: Arc<Device>) -> io::Result<SerialEngine> {
        Ok(SerialEngine {
            device,
            queued: VecDeque::new(),
            refused: Vec::new(),
            readiness: Readiness::new()?,
        })
    }

    fn perform(&self, mut op: Op) -> Completion {
        let info = op.info();
        let result = blocking::transfer(&self.device, &info, op.buffer_mut());
        op.complete(result)
    }
}

impl Engine for SerialEngine {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            name: "serial",
            align_bytes: self.device.align_bytes(),
            in_flight_max: 1,
            fixed_buffers: false,
            passthrough: false,
        }
    }

    fn submit(&mut self, ops: &mut Vec<Op>) {
        for op in ops.drain(..) {
            match self.device.admit(op) {
                Ok(op) => self.queued.push_back(op),
                Err(refused) => self.refused.push(refused),
            }
        }
        if self.pending_count() > 0 {
            self.readiness.signal();
        }
    }

    fn reap(&mut self, completions: &mut Vec<Completion>, wait: Wait) -> usize {
        let before = completions.len();
        completions.append(&mut self.refused);
        let deadline = match wait {
            Wait::Nothing => Instant::now(),
            Wait::Until(deadline) => deadline,
        };
        for performed in 0..SERIAL_REAP_OPS_MAX {
            if performed > 0 && Instant::now() >= deadline {
                break;
            }
            let Some(op) = self.queued.pop_front() else {
                break;
            };
            completions.push(self.perform(op));
        }
        if self.pending_count() == 0 {
            self.readiness.clear();
        }
        completions.len() - before
    }

    fn pending_count(&self) -> usize {
        self.queued.len() + self.refused.len()
    }

    fn readiness(&self) -> BorrowedFd<'_> {
        self.readiness.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::Buffer;

    #[test]
    fn a_reap_past_its_deadline_performs_one_operation_and_stops() {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(1 << 20).unwrap();
        let mut engine = SerialEngine::new(Arc::new(Device::open(file.path()).unwrap())).unwrap();
        let mut ops: Vec<Op> = (0..10u64)
            .map(|i| Op::read(i, i * 512, Buffer::new_aligned(512, 512).unwrap()))
            .collect();
        engine.submit(&mut ops);
        let mut completions = Vec::new();
        assert_eq!(engine.reap(&mut completions, Wait::Nothing), 1);
        let expired = Instant::now() - std::time::Duration::from_millis(1);
        assert_eq!(engine.reap(&mut completions, Wait::Until(expired)), 1);
        let far = Instant::now() + std::time::Duration::from_secs(60);
        assert_eq!(engine.reap(&mut completions, Wait::Until(far)), 8);
        assert_eq!(engine.pending_count(), 0);
    }
}
