//! The stdio of a process on the engine: its output in bounded chunks, its stdin as a
//! writer. Attach and exec start hand this out (see [`super::raw::hijack`]).
//!
//! Berth reads exactly what the engine sends: raw bytes when the process has a TTY,
//! Docker's stdcopy frames (8-byte header: stream, 0, 0, 0, big-endian length) when it
//! has not. bollard guesses the framing from the first byte, which breaks on TTY output
//! that starts with a byte below 3; TLS hosts still go through bollard.
//!
//! Reads are bounded: a chunk is at most [`MAX_CHUNK`] bytes, and the stream is pulled
//! by the consumer, so the engine is never read faster than the consumer drains.

use std::pin::Pin;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWrite;
use tokio_util::codec::{Decoder, FramedRead};

use super::{EngineError, ObjectKind, Result};

/// Largest piece of output handed on at once, in bytes.
pub const MAX_CHUNK: usize = 32 * 1024;

/// Which stream a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
    /// A TTY: stdout and stderr are one stream.
    Tty,
}

/// A piece of a process's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub stream: OutputStream,
    pub bytes: Bytes,
}

/// Both directions of a hijacked connection. Dropping it closes the connection: the
/// engine detaches (the container or exec goes on).
pub struct Stdio {
    /// The process's output; ends when the process ends (or the engine detaches).
    pub output: BoxStream<'static, Result<OutputChunk>>,
    /// The process's stdin. `shutdown()` closes it (EOF) and keeps the output open.
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

/// Stdio over a connection Berth upgraded itself.
pub(super) fn stdio_from_io<T>(io: T, tty: bool) -> Stdio
where
    T: tokio::io::AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let output = FramedRead::with_capacity(read, StdioDecoder::new(tty), MAX_CHUNK)
        .map(|item| item.map_err(|e| EngineError::Unavailable(format!("reading from the engine: {e}"))));
    Stdio { output: output.boxed(), input: Box::pin(write) }
}

/// Stdio over bollard's attach or exec start (TLS hosts).
pub(super) fn stdio_from_bollard(
    output: Pin<
        Box<dyn Stream<Item = std::result::Result<bollard::container::LogOutput, bollard::errors::Error>> + Send>,
    >,
    input: Pin<Box<dyn AsyncWrite + Send>>,
    tty: bool,
) -> Stdio {
    use bollard::container::LogOutput as L;
    let output = output.filter_map(move |item| {
        std::future::ready(match item {
            Ok(L::StdOut { message }) | Ok(L::Console { message }) => Some(Ok(OutputChunk {
                stream: if tty { OutputStream::Tty } else { OutputStream::Stdout },
                bytes: message,
            })),
            Ok(L::StdErr { message }) => Some(Ok(OutputChunk { stream: OutputStream::Stderr, bytes: message })),
            Ok(L::StdIn { .. }) => None,
            Err(e) => Some(Err(EngineError::from_bollard(ObjectKind::Container, e))),
        })
    });
    Stdio { output: output.boxed(), input }
}

/// Splits the engine's output into chunks: raw with a TTY, stdcopy frames without. A
/// frame's payload is handed on as it arrives, in pieces of at most [`MAX_CHUNK`], so a
/// large frame is never held whole.
#[derive(Debug)]
pub struct StdioDecoder {
    tty: bool,
    /// The stream and the bytes still due of the frame being read.
    frame: Option<(OutputStream, usize)>,
}

impl StdioDecoder {
    pub fn new(tty: bool) -> Self {
        Self { tty, frame: None }
    }
}

impl Decoder for StdioDecoder {
    type Item = OutputChunk;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> std::result::Result<Option<OutputChunk>, std::io::Error> {
        if self.tty {
            if src.is_empty() {
                return Ok(None);
            }
            let n = src.len().min(MAX_CHUNK);
            return Ok(Some(OutputChunk { stream: OutputStream::Tty, bytes: src.split_to(n).freeze() }));
        }
        loop {
            match self.frame {
                None => {
                    if src.len() < 8 {
                        return Ok(None);
                    }
                    let stream = match src[0] {
                        // Stdin is never echoed on the raw stream; treat it as stdout.
                        0 | 1 => OutputStream::Stdout,
                        2 => OutputStream::Stderr,
                        other => {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                format!("unexpected stream type {other} in the engine's output"),
                            ));
                        }
                    };
                    let len = u32::from_be_bytes([src[4], src[5], src[6], src[7]]) as usize;
                    src.advance(8);
                    if len > 0 {
                        self.frame = Some((stream, len));
                    }
                }
                Some((stream, due)) => {
                    if src.is_empty() {
                        return Ok(None);
                    }
                    let n = src.len().min(due).min(MAX_CHUNK);
                    let bytes = src.split_to(n).freeze();
                    self.frame = (due > n).then_some((stream, due - n));
                    return Ok(Some(OutputChunk { stream, bytes }));
                }
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> std::result::Result<Option<OutputChunk>, std::io::Error> {
        match self.decode(src)? {
            Some(chunk) => Ok(Some(chunk)),
            // A torn header at the end: nothing more will come.
            None => {
                src.clear();
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![stream, 0, 0, 0];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn drain(d: &mut StdioDecoder, buf: &mut BytesMut) -> Vec<OutputChunk> {
        let mut out = Vec::new();
        while let Some(c) = d.decode(buf).unwrap() {
            out.push(c);
        }
        out
    }

    #[test]
    fn tty_output_is_raw_even_when_it_starts_with_a_low_byte() {
        let mut d = StdioDecoder::new(true);
        let mut buf = BytesMut::from(&b"\x01\x02\x00hi"[..]);
        let out = drain(&mut d, &mut buf);
        assert_eq!(out, vec![OutputChunk { stream: OutputStream::Tty, bytes: Bytes::from_static(b"\x01\x02\x00hi") }]);
    }

    #[test]
    fn stdcopy_frames_are_split_by_stream_and_may_arrive_torn() {
        let mut d = StdioDecoder::new(false);
        let mut bytes = frame(1, b"out\n");
        bytes.extend(frame(2, b"err\n"));
        bytes.extend(frame(1, b""));
        bytes.extend(frame(1, b"more"));
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        // Feed one byte at a time.
        for b in bytes {
            buf.extend_from_slice(&[b]);
            out.extend(drain(&mut d, &mut buf));
        }
        let joined = |s: OutputStream| -> Vec<u8> {
            out.iter().filter(|c| c.stream == s).flat_map(|c| c.bytes.to_vec()).collect()
        };
        assert_eq!(joined(OutputStream::Stdout), b"out\nmore");
        assert_eq!(joined(OutputStream::Stderr), b"err\n");
    }

    #[test]
    fn a_large_frame_comes_in_bounded_chunks() {
        let mut d = StdioDecoder::new(false);
        let payload = vec![b'x'; MAX_CHUNK * 2 + 5];
        let mut buf = BytesMut::from(&frame(2, &payload)[..]);
        let out = drain(&mut d, &mut buf);
        assert_eq!(out.iter().map(|c| c.bytes.len()).collect::<Vec<_>>(), vec![MAX_CHUNK, MAX_CHUNK, 5]);
        assert!(out.iter().all(|c| c.stream == OutputStream::Stderr));
    }

    #[test]
    fn a_bad_stream_type_is_an_error() {
        let mut d = StdioDecoder::new(false);
        let mut buf = BytesMut::from(&frame(7, b"x")[..]);
        assert!(d.decode(&mut buf).is_err());
    }
}
