//! Gathered writes of memory that this process may not read as a `&[u8]`:
//! [`IoVec`] names a range (of its own bytes, or of a pool mapping) by
//! address and length only, and [`send`] hands a list of them to the
//! kernel in one `sendmsg(2)`. The kernel copies the bytes; no reference to
//! them is ever made here, so a pool its owner may still write (a module's
//! output pool, as the server sees it: [`Buf::io_vec`](crate::Buf::io_vec))
//! can be sent without a data race in Rust's model, whatever its owner
//! does meanwhile.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd};

/// One piece of a gathered write: `len` bytes at an address, borrowed for
/// `'a` (from a slice, or from a [`Buf`](crate::Buf), which keeps its
/// mapping alive). Like `std::io::IoSlice`, but it never becomes a
/// `&[u8]`: only the kernel reads what it names.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct IoVec<'a> {
    raw: libc::iovec,
    _borrow: PhantomData<&'a [u8]>,
}

// SAFETY: an IoVec is an address and a length borrowed for 'a, like
// `&'a [u8]`; nothing in this process reads or writes through it (only the
// kernel, during `send`), so moving or sharing it between threads adds no
// access of its own.
unsafe impl Send for IoVec<'_> {}
// SAFETY: as for `Send` above: `&IoVec` offers only the length.
unsafe impl Sync for IoVec<'_> {}

impl std::fmt::Debug for IoVec<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoVec").field("len", &self.len()).finish()
    }
}

impl Default for IoVec<'_> {
    fn default() -> Self {
        IoVec::from_slice(&[])
    }
}

impl<'a> IoVec<'a> {
    /// Bytes of this process's own memory.
    pub fn from_slice(bytes: &'a [u8]) -> Self {
        IoVec {
            raw: libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: bytes.len(),
            },
            _borrow: PhantomData,
        }
    }

    /// `len` bytes at `addr`, which the caller keeps mapped for `'a`.
    pub(crate) fn from_raw(addr: *const u8, len: usize) -> Self {
        IoVec {
            raw: libc::iovec {
                iov_base: addr.cast_mut().cast(),
                iov_len: len,
            },
            _borrow: PhantomData,
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.raw.iov_len
    }

    /// Whether it names no byte.
    pub fn is_empty(&self) -> bool {
        self.raw.iov_len == 0
    }

    /// The same range without its first `n` bytes (at most all of them).
    fn skip(self, n: usize) -> Self {
        let n = n.min(self.len());
        IoVec::from_raw(
            self.raw.iov_base.cast::<u8>().cast_const().wrapping_add(n),
            self.len() - n,
        )
    }

    /// Drops `n` bytes from the front of `bufs` (those a partial write
    /// took), as `std::io::IoSlice::advance_slices` does.
    ///
    /// # Panics
    /// If `n` is more than `bufs` holds.
    pub fn advance_slices(bufs: &mut &mut [IoVec<'a>], n: usize) {
        let mut left = n;
        let mut whole = 0;
        for b in bufs.iter() {
            if b.len() > left {
                break;
            }
            left -= b.len();
            whole += 1;
        }
        *bufs = &mut std::mem::take(bufs)[whole..];
        match bufs.first_mut() {
            Some(first) => *first = first.skip(left),
            None => assert!(left == 0, "advancing io vectors beyond their length"),
        }
    }
}

/// Most pieces one `sendmsg` takes (Linux's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// Writes what `bufs` name to the socket `fd` with one `sendmsg(2)`
/// (`MSG_NOSIGNAL`, and `MSG_MORE` when `more`); returns how many bytes the
/// socket took. A non-blocking socket that takes nothing answers
/// `ErrorKind::WouldBlock`.
pub fn send(fd: BorrowedFd<'_>, bufs: &[IoVec<'_>], more: bool) -> io::Result<usize> {
    let count = bufs.len().min(IOV_MAX);
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoVec` is `repr(transparent)` over `iovec`: the slice is an array
    // of iovecs, which the kernel only reads.
    msg.msg_iov = bufs.as_ptr().cast::<libc::iovec>().cast_mut();
    msg.msg_iovlen = count as _;
    let mut flags = libc::MSG_NOSIGNAL;
    if more {
        flags |= libc::MSG_MORE;
    }
    // SAFETY: `msg` points at `count` valid iovecs for the duration of the
    // call; each names memory that stays mapped for its lifetime `'_`
    // (a live slice, or a `Buf` whose `Arc` holds the mapping), which
    // outlives the call. The kernel reads those bytes itself (copying them
    // into the socket); no Rust reference to them is made.
    let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, flags) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_drops_whole_pieces_then_part_of_the_next() {
        let (a, b, c) = (b"abc".as_slice(), b"de".as_slice(), b"fghij".as_slice());
        let mut all = [
            IoVec::from_slice(a),
            IoVec::from_slice(b),
            IoVec::from_slice(c),
        ];
        let mut bufs = &mut all[..];
        IoVec::advance_slices(&mut bufs, 0);
        assert_eq!(bufs.len(), 3);
        IoVec::advance_slices(&mut bufs, 4);
        assert_eq!(bufs.iter().map(IoVec::len).collect::<Vec<_>>(), [1, 5]);
        IoVec::advance_slices(&mut bufs, 3);
        assert_eq!(bufs.iter().map(IoVec::len).collect::<Vec<_>>(), [3]);
        IoVec::advance_slices(&mut bufs, 3);
        assert!(bufs.is_empty());
    }

    #[test]
    fn a_gathered_send_writes_the_pieces_in_order() {
        use std::io::Read;
        use std::os::fd::AsFd;
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let bufs = [
            IoVec::from_slice(b"head "),
            IoVec::default(),
            IoVec::from_slice(b"body"),
        ];
        assert_eq!(send(a.as_fd(), &bufs, false).unwrap(), 9);
        drop(a);
        let mut got = String::new();
        b.read_to_string(&mut got).unwrap();
        assert_eq!(got, "head body");
    }
}
