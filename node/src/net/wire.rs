//! Length-prefixed frames on a byte stream.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes (one
//! value encoded with `primitives::codec`). The reader checks the length
//! against the protocol's bound *before* allocating, so a hostile prefix
//! costs the reader nothing; the stream cannot be resynchronised after an
//! oversized prefix, so the caller drops it.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::io;

/// Bytes of the length prefix.
pub const PREFIX_BYTES: usize = 4;

/// The most a reader allocates ahead of the bytes it has received.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The remote announced a frame larger than the protocol's bound.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    Oversized {
        /// The announced length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The stream failed or ended inside a frame.
    #[error("stream error: {0}")]
    Io(#[from] io::Error),
}

/// Reads one frame of at most `frame_bytes_max` bytes. `Ok(None)` is a clean
/// end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    frame_bytes_max: usize,
) -> Result<Option<Vec<u8>>, ReadError> {
    let mut prefix = [0u8; PREFIX_BYTES];
    // Read the first byte alone so a clean close between frames is not an
    // error.
    if reader.read(&mut prefix[..1]).await? == 0 {
        return Ok(None);
    }
    reader.read_exact(&mut prefix[1..]).await?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > frame_bytes_max {
        return Err(ReadError::Oversized {
            len,
            max: frame_bytes_max,
        });
    }
    // Grow the buffer as bytes arrive rather than trusting the prefix: a
    // peer announcing a large frame and sending it slowly holds only what
    // it has actually sent.
    let mut frame = Vec::with_capacity(len.min(READ_CHUNK_BYTES));
    reader.take(len as u64).read_to_end(&mut frame).await?;
    if frame.len() != len {
        return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(Some(frame))
}

/// Appends the prefix and `frame` to `out` (the caller batches frames into
/// one write).
pub fn put_frame(out: &mut Vec<u8>, frame: &[u8]) {
    let len = u32::try_from(frame.len()).expect("frames are bounded far below 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(frame);
}

/// Writes `bytes` (one or more frames built with [`put_frame`]) and flushes.
pub async fn write_all_flush<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
) -> io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut bytes = Vec::new();
        put_frame(&mut bytes, b"hello");
        put_frame(&mut bytes, b"");
        put_frame(&mut bytes, &[7u8; 300]);
        let mut reader = Cursor::new(bytes);
        block_on(async {
            assert_eq!(
                read_frame(&mut reader, 300).await.unwrap().unwrap(),
                b"hello"
            );
            assert_eq!(read_frame(&mut reader, 300).await.unwrap().unwrap(), b"");
            assert_eq!(
                read_frame(&mut reader, 300).await.unwrap().unwrap(),
                vec![7u8; 300]
            );
            assert!(read_frame(&mut reader, 300).await.unwrap().is_none());
        });
    }

    #[test]
    fn oversized_prefix_is_refused_before_reading_the_body() {
        // Announces 4 GiB − 1 and sends nothing else.
        let mut reader = Cursor::new(vec![0xFF, 0xFF, 0xFF, 0xFF]);
        let result = block_on(read_frame(&mut reader, 1024));
        assert!(matches!(
            result,
            Err(ReadError::Oversized {
                len: 0xFFFF_FFFF,
                max: 1024
            })
        ));
    }

    #[test]
    fn truncated_frame_is_an_error() {
        let mut bytes = Vec::new();
        put_frame(&mut bytes, b"hello");
        bytes.pop();
        let mut reader = Cursor::new(bytes);
        assert!(matches!(
            block_on(read_frame(&mut reader, 100)),
            Err(ReadError::Io(_))
        ));
    }
}
