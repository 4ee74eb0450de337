//! Reading a byte range of the device through the caller's engine, in pool-sized chunks.

use rbio_core::{BufferPool, Engine, OpError, OpSpec, Stream, StreamError};

/// Why a range could not be read.
#[derive(Debug)]
pub(crate) enum RangeError {
    /// An operation failed; the first failure in device order.
    Op(OpError),
    /// The engine stopped answering.
    Stream(StreamError),
}

/// Reads `len_bytes` at `offset_bytes` (both multiples of the pool's alignment, as the layout
/// guarantees) into a new vector.
pub(crate) fn read_range(
    engine: &mut dyn Engine,
    pool: &BufferPool,
    offset_bytes: u64,
    len_bytes: u64,
) -> Result<Vec<u8>, RangeError> {
    let mut bytes = vec![0u8; len_bytes as usize];
    read_into(engine, pool, offset_bytes, len_bytes, &mut |start, data| {
        bytes[start..start + data.len()].copy_from_slice(data);
    })?;
    Ok(bytes)
}

/// As [`read_range`], in pieces of the pool's buffer size, in device order: a consumer can
/// free each piece once it is done with it.
pub(crate) fn read_range_chunks(
    engine: &mut dyn Engine,
    pool: &BufferPool,
    offset_bytes: u64,
    len_bytes: u64,
) -> Result<Vec<Vec<u8>>, RangeError> {
    let chunk_bytes = pool.buffer_bytes() as u64;
    let mut chunks: Vec<Vec<u8>> = (0..len_bytes.div_ceil(chunk_bytes))
        .map(|chunk_index| {
            let start = chunk_index * chunk_bytes;
            vec![0u8; chunk_bytes.min(len_bytes - start) as usize]
        })
        .collect();
    read_into(engine, pool, offset_bytes, len_bytes, &mut |start, data| {
        let chunk = &mut chunks[start / chunk_bytes as usize];
        chunk[..data.len()].copy_from_slice(data);
    })?;
    Ok(chunks)
}

/// Reads the range in pool-sized pieces, handing each piece read to `place` with its start
/// relative to `offset_bytes`.
fn read_into(
    engine: &mut dyn Engine,
    pool: &BufferPool,
    offset_bytes: u64,
    len_bytes: u64,
    place: &mut dyn FnMut(usize, &[u8]),
) -> Result<(), RangeError> {
    let chunk_bytes = pool.buffer_bytes() as u64;
    let mut first_error: Option<OpError> = None;
    let specs = (0..len_bytes.div_ceil(chunk_bytes)).map(|chunk_index| {
        let start = chunk_index * chunk_bytes;
        let chunk_len = chunk_bytes.min(len_bytes - start) as usize;
        OpSpec::read(chunk_index, offset_bytes + start, chunk_len)
    });
    Stream::new(engine, pool)
        .run_reads(specs, |completion| match completion.check() {
            Ok(_) => {
                let start = (completion.info().offset_bytes - offset_bytes) as usize;
                place(start, completion.data());
            }
            Err(error) => {
                let earlier = first_error
                    .as_ref()
                    .is_some_and(|first| first.info.offset_bytes < error.info.offset_bytes);
                if !earlier {
                    first_error = Some(error);
                }
            }
        })
        .map_err(RangeError::Stream)?;
    match first_error {
        Some(error) => Err(RangeError::Op(error)),
        None => Ok(()),
    }
}
