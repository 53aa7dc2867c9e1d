//! The chunked transfer-coding decoder (RFC 9112 section 7.1): a state
//! machine fed whatever bytes have arrived. It hands out the data parts as
//! sub-slices of its input and keeps only a few integers of state, so
//! splitting the input anywhere gives the same result.

use crate::error::Error;

/// Longest chunk-size line (size, extensions) and longest trailer section.
const MAX_LINE: u64 = 4096;
const MAX_TRAILERS: u64 = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size.
    Size { digits: u8 },
    /// After the size: optional whitespace and `;extensions` up to CR.
    Extension,
    /// Seen CR after the size line; LF must follow.
    SizeLf,
    /// Inside chunk data, `remaining` bytes to go.
    Data,
    /// After chunk data: CR must follow.
    DataCr,
    /// After chunk data and CR: LF must follow.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// Seen CR inside a trailer line; LF must follow.
    TrailerLf,
    /// Seen CR on an empty line; LF ends the body.
    EndLf,
    /// The body is complete.
    Done,
}

/// What one call to [`ChunkedDecoder::feed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes used; the rest belongs to whatever follows the body.
    pub consumed: usize,
    /// The body ended within this input.
    pub done: bool,
}

/// Decodes one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    remaining: u64,
    total: u64,
    max_body: u64,
    line: u64,
}

impl ChunkedDecoder {
    /// A decoder for a body of at most `max_body` decoded bytes (beyond: 413).
    pub fn new(max_body: u64) -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            size: 0,
            remaining: 0,
            total: 0,
            max_body,
            line: 0,
        }
    }

    /// Decoded body bytes so far.
    pub fn decoded_len(&self) -> u64 {
        self.total
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Skips the rest of the current chunk's data without seeing it, when
    /// the decoder is inside one: its length (a caller moving the data
    /// another way, such as `splice(2)`, then feeds the framing that
    /// follows). `None` outside chunk data.
    pub fn skip_data(&mut self) -> Option<u64> {
        if self.state != State::Data || self.remaining == 0 {
            return None;
        }
        let n = std::mem::take(&mut self.remaining);
        self.state = State::DataCr;
        Some(n)
    }

    /// Decodes from `input`, giving each run of body data to `on_data` (a
    /// sub-slice of `input`). Stops at the end of the body or of the input.
    pub fn feed(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<Progress, Error> {
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            let b = input[i];
            match self.state {
                State::Data => {
                    let take = (input.len() - i)
                        .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                    on_data(&input[i..i + take]);
                    self.remaining -= take as u64;
                    i += take;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::Size { digits } => match hex(b) {
                    Some(d) => {
                        if digits >= 16 {
                            return Err(Error::BadRequest("chunk size too long"));
                        }
                        self.size = self.size << 4 | u64::from(d);
                        self.state = State::Size { digits: digits + 1 };
                    }
                    None if digits == 0 => return Err(Error::BadRequest("invalid chunk size")),
                    None => {
                        self.line = 0;
                        self.state = State::Extension;
                        continue; // look at this byte again
                    }
                },
                State::Extension => match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\n' | 0 => return Err(Error::BadRequest("invalid chunk size line")),
                    b' ' | b'\t' | b';' | 0x21..=0x7e | 0x80..=0xff => {
                        self.line += 1;
                        if self.line > MAX_LINE {
                            return Err(Error::BadRequest("chunk extension too long"));
                        }
                    }
                    _ => return Err(Error::BadRequest("invalid chunk size line")),
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(Error::BadRequest("bare CR in chunk size line"));
                    }
                    if self.size == 0 {
                        self.line = 0;
                        self.state = State::TrailerStart;
                    } else {
                        self.total = self.total.saturating_add(self.size);
                        if self.total > self.max_body {
                            return Err(Error::BodyTooLarge);
                        }
                        self.remaining = self.size;
                        self.state = State::Data;
                    }
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(Error::BadRequest("chunk data not followed by CRLF"));
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(Error::BadRequest("chunk data not followed by CRLF"));
                    }
                    self.size = 0;
                    self.state = State::Size { digits: 0 };
                }
                State::TrailerStart => match b {
                    b'\r' => self.state = State::EndLf,
                    b'\n' | 0 | b' ' | b'\t' => {
                        return Err(Error::BadRequest("invalid trailer line"));
                    }
                    _ => {
                        self.state = State::TrailerLine;
                        self.count_trailer()?;
                    }
                },
                State::TrailerLine => match b {
                    b'\r' => self.state = State::TrailerLf,
                    b'\n' | 0 => return Err(Error::BadRequest("invalid trailer line")),
                    _ => self.count_trailer()?,
                },
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(Error::BadRequest("bare CR in trailer"));
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(Error::BadRequest("bare CR after last chunk"));
                    }
                    self.state = State::Done;
                }
                State::Done => unreachable!("loop condition excludes Done"),
            }
            i += 1;
        }
        Ok(Progress {
            consumed: i,
            done: self.state == State::Done,
        })
    }

    fn count_trailer(&mut self) -> Result<(), Error> {
        self.line += 1;
        if self.line > MAX_TRAILERS {
            return Err(Error::HeadTooLarge);
        }
        Ok(())
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes: (body, consumed) or the
    /// error status; `None` if the body never ended.
    fn decode(input: &[u8], step: usize, max: u64) -> Result<Option<(Vec<u8>, usize)>, u16> {
        let mut d = ChunkedDecoder::new(max);
        let mut body = Vec::new();
        let mut at = 0;
        while at < input.len() {
            let end = (at + step).min(input.len());
            let p = d
                .feed(&input[at..end], |data| body.extend_from_slice(data))
                .map_err(|e| e.status())?;
            at += p.consumed;
            if p.done {
                return Ok(Some((body, at)));
            }
            assert_eq!(
                p.consumed,
                end - (at - p.consumed),
                "consumes everything before the end"
            );
        }
        Ok(None)
    }

    #[test]
    fn chunked_table() {
        // (input, Ok(body) | Err(status)); a trailing "X" after a complete
        // body must stay unconsumed.
        let table: &[(&str, Result<&str, u16>)] = &[
            ("0\r\n\r\nX", Ok("")),
            ("5\r\nhello\r\n0\r\n\r\nX", Ok("hello")),
            ("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nX", Ok("hello world")),
            ("A\r\n0123456789\r\n0\r\n\r\nX", Ok("0123456789")),
            ("a;name=value\r\n0123456789\r\n0\r\n\r\nX", Ok("0123456789")),
            ("5 ; ext\r\nhello\r\n0\r\n\r\nX", Ok("hello")),
            (
                "5\r\nhello\r\n0\r\nTrailer: yes\r\nMore: x\r\n\r\nX",
                Ok("hello"),
            ),
            ("000005\r\nhello\r\n0\r\n\r\nX", Ok("hello")),
            ("\r\n", Err(400)),
            ("x\r\n", Err(400)),
            (" 5\r\nhello\r\n0\r\n\r\n", Err(400)),
            ("-5\r\nhello\r\n", Err(400)),
            ("5\nhello\r\n0\r\n\r\n", Err(400)),
            ("5\r\nhelloXX0\r\n\r\n", Err(400)),
            ("5\r\nhello\r0\r\n\r\n", Err(400)),
            ("5\rhello", Err(400)),
            ("0\r\n\rX", Err(400)),
            ("0\r\nBad\rX", Err(400)),
            ("0\r\n folded: no\r\n\r\n", Err(400)),
            ("11111111111111111\r\n", Err(400)),
            ("ffffffffffffffff\r\n", Err(413)),
            ("c\r\nhello world!\r\n0\r\n\r\n", Err(413)),
            ("5\r\nhel", Err(0)),
        ];
        for (input, want) in table {
            for step in [1, 2, 3, 7, input.len()] {
                let got = decode(input.as_bytes(), step, 11);
                match want {
                    Ok(body) => {
                        let (got_body, consumed) =
                            got.unwrap_or_else(|e| panic!("{input:?}: {e}")).unwrap();
                        assert_eq!(got_body, body.as_bytes(), "{input:?} step {step}");
                        assert_eq!(&input[consumed..], "X", "{input:?} step {step}");
                    }
                    Err(0) => assert_eq!(got, Ok(None), "{input:?} step {step}"),
                    Err(status) => assert_eq!(got, Err(*status), "{input:?} step {step}"),
                }
            }
        }
    }

    #[test]
    fn long_extension_and_trailer_are_refused() {
        let ext = format!("1;{}\r\n", "e".repeat(5000));
        assert_eq!(decode(ext.as_bytes(), 100, 10), Err(400));
        let trailer = format!("0\r\nX: {}\r\n\r\n", "t".repeat(9000));
        assert_eq!(decode(trailer.as_bytes(), 100, 10), Err(431));
    }
}
