//! Several independent jobs at once, one thread each (for example one device each, with its
//! own engine), their progress funnelled to the caller's thread and their results handed back
//! in the order the jobs were given.
//!
//! A thread per job keeps each job's code straight-line and lets every job keep its own
//! engine's window full; jobs that wait on their devices cost a sleeping thread, not a core.
//! Progress travels over a bounded queue that jobs never wait on: when the caller falls
//! behind, an event is dropped, which is harmless because each event supersedes the one
//! before it.

use std::fmt;
use std::sync::mpsc;

/// Progress events queued between the jobs and the caller before new ones are dropped.
pub const PROGRESS_QUEUED_MAX: usize = 1024;

/// The most jobs one [`fan_out`] runs: each is a thread.
pub const FAN_OUT_JOBS_MAX: usize = 256;

/// Why a job of [`fan_out`] did not run.
#[derive(Debug)]
#[non_exhaustive]
pub enum FanOutError {
    /// Its thread could not be started (the process is out of threads or memory).
    Spawn {
        /// The job's position among the inputs.
        job_index: usize,
        /// What the system said.
        source: std::io::Error,
    },
}

impl fmt::Display for FanOutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FanOutError::Spawn { job_index, .. } => {
                write!(f, "cannot start a thread for job {job_index}")
            }
        }
    }
}

impl std::error::Error for FanOutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FanOutError::Spawn { source, .. } => Some(source),
        }
    }
}

/// Runs `job` on every input at once, each on a thread of its own, and returns the results
/// in the order of `inputs`.
///
/// `job` gets its input and a progress callback; each event it reports reaches `on_progress`
/// on the caller's thread, with the job's index, while the jobs run. A job never waits for
/// the caller: events beyond [`PROGRESS_QUEUED_MAX`] queued are dropped. One job's failure
/// is its own result and does not stop the others; a job that panics panics the caller once
/// every job has ended.
///
/// # Panics
/// With more than [`FAN_OUT_JOBS_MAX`] inputs, or when a job panics.
pub fn fan_out<I, P, R, F>(
    inputs: &[I],
    job: F,
    on_progress: &mut dyn FnMut(usize, P),
) -> Vec<Result<R, FanOutError>>
where
    I: Sync,
    P: Send,
    R: Send,
    F: Fn(&I, &mut dyn FnMut(P)) -> R + Sync,
{
    assert!(
        inputs.len() <= FAN_OUT_JOBS_MAX,
        "{} jobs, at most {FAN_OUT_JOBS_MAX}",
        inputs.len()
    );
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::sync_channel::<(usize, P)>(PROGRESS_QUEUED_MAX);
        let job = &job;
        let handles: Vec<_> = inputs
            .iter()
            .enumerate()
            .map(|(job_index, input)| {
                let sender = sender.clone();
                std::thread::Builder::new()
                    .name(format!("rbio-job-{job_index}"))
                    .spawn_scoped(scope, move || {
                        job(input, &mut |event| {
                            // Full: the caller is behind and a later event will say more.
                            let _ = sender.try_send((job_index, event));
                        })
                    })
                    .map_err(|source| FanOutError::Spawn { job_index, source })
            })
            .collect();
        // Every job holds a clone; the queue ends when the last job has ended.
        drop(sender);
        for (job_index, event) in receiver {
            on_progress(job_index, event);
        }
        let results: Vec<_> = handles
            .into_iter()
            .map(|handle| handle.map(|handle| handle.join()))
            .collect();
        results
            .into_iter()
            .map(|result| {
                result.map(|joined| joined.unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn results_come_back_in_input_order_with_each_jobs_progress() {
        let inputs = [3u64, 1, 2];
        let mut seen: Vec<(usize, u64)> = Vec::new();
        let results = fan_out(
            &inputs,
            |&count, progress| {
                for step in 1..=count {
                    progress(step);
                }
                count * 10
            },
            &mut |job_index, step| seen.push((job_index, step)),
        );
        let results: Vec<u64> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(results, [30, 10, 20]);
        for (job_index, &count) in inputs.iter().enumerate() {
            let steps: Vec<u64> = seen
                .iter()
                .filter(|(index, _)| *index == job_index)
                .map(|&(_, step)| step)
                .collect();
            assert_eq!(steps, (1..=count).collect::<Vec<_>>(), "job {job_index}");
        }
    }

    #[test]
    fn jobs_run_at_the_same_time() {
        // Each job waits until all have started: run one after another, this never ends.
        let inputs = [0u8; 4];
        let barrier = Arc::new(Barrier::new(inputs.len()));
        let results = fan_out(
            &inputs,
            |_, _: &mut dyn FnMut(())| barrier.wait().is_leader(),
            &mut |_, _| {},
        );
        let leaders = results.into_iter().filter(|r| *r.as_ref().unwrap()).count();
        assert_eq!(leaders, 1);
    }

    #[test]
    fn a_failing_job_does_not_stop_the_others() {
        let inputs = ["7", "x", "9"];
        let results = fan_out(
            &inputs,
            |text, _: &mut dyn FnMut(())| text.parse::<u32>(),
            &mut |_, _| {},
        );
        let results: Vec<_> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(results[0], Ok(7));
        assert!(results[1].is_err());
        assert_eq!(results[2], Ok(9));
    }

    #[test]
    fn a_flood_of_progress_never_holds_a_job_back() {
        // The caller takes the first event and then waits for the job to end: a job that
        // waited for room in the queue would never end.
        let events = PROGRESS_QUEUED_MAX as u64 * 4;
        let (ended, job_ended) = mpsc::channel::<()>();
        let mut received = 0u64;
        let results = fan_out(
            &[events],
            |&events, progress| {
                (0..events).for_each(&mut *progress);
                ended.send(()).unwrap();
                events
            },
            &mut |_, _| {
                if received == 0 {
                    job_ended.recv().unwrap();
                }
                received += 1;
            },
        );
        assert_eq!(results[0].as_ref().unwrap(), &events);
        assert!(received <= PROGRESS_QUEUED_MAX as u64 + 1, "{received}");
    }

    #[test]
    fn no_jobs_no_results() {
        let results = fan_out(&[] as &[u8], |_, _: &mut dyn FnMut(())| 0, &mut |_, _| {});
        assert!(results.is_empty());
    }
}
