//! The header reads of bringup's validation through the engine alone: the stream over the
//! engine, with no checkpoint to parse and no header to judge. Beside fio at the same depth it
//! tells what the engine delivers apart from what bringup's own work costs.

use std::time::Instant;

use rbio_core::{BufferPool, OpSpec, Stream, PAGE_BYTES};
use rbio_engines::EngineConfig;

use super::fio::StridedHeaders;
use crate::exit::Failure;

/// Reads every header of `headers` through a new engine of `config` at its depth, with a
/// pool of twice that as bringup has; returns reads per second.
pub fn read_headers(
    headers: &StridedHeaders,
    config: &EngineConfig,
    direct: bool,
) -> Result<f64, Failure> {
    let device = rbio_recovery::open_device(&headers.path, direct)?;
    let depth = config.depth(&device);
    let buffer_bytes = headers.read_bytes.next_multiple_of(PAGE_BYTES);
    let pool = BufferPool::new(buffer_bytes, 2 * depth, PAGE_BYTES)?;
    let mut engine = config.build(&device, &pool)?;
    let specs = (0..headers.count).map(|index| {
        let offset_bytes = headers.first_offset_bytes + index * headers.stride_bytes;
        OpSpec::read(index, offset_bytes, headers.read_bytes)
    });
    let mut failed_count = 0u64;
    let started = Instant::now();
    Stream::new(&mut *engine, &pool)
        .window(depth)
        .run_reads(specs, |completion| {
            failed_count += u64::from(completion.result().is_err());
        })?;
    let elapsed = started.elapsed();
    if failed_count > 0 {
        let path = headers.path.display();
        return Err(
            format!("{path}: {failed_count} header reads failed through the engine alone").into(),
        );
    }
    Ok(headers.count as f64 / elapsed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(path: &std::path::Path, count: u64) -> StridedHeaders {
        StridedHeaders {
            path: path.to_owned(),
            first_offset_bytes: 4096,
            stride_bytes: 8192,
            read_bytes: 4096,
            count,
        }
    }

    #[test]
    fn every_header_is_read_and_a_failed_read_is_an_error() {
        let image = tempfile::NamedTempFile::new().unwrap();
        image.as_file().set_len(16 * 8192).unwrap();
        let config = EngineConfig::posix(Some(2));
        let rate = read_headers(&headers(image.path(), 16), &config, false).unwrap();
        assert!(rate > 0.0, "{rate}");
        // Headers 16 to 19 lie past the end of the image.
        let error = read_headers(&headers(image.path(), 20), &config, false).unwrap_err();
        assert!(
            error.to_string().contains("4 header reads failed"),
            "{error}"
        );
    }
}
