//! Reading an initramfs as the kernel unpacks it, so that `kiln test` can
//! look inside a ramdisk's tree without unpacking it anywhere.
//!
//! The kernel accepts an initramfs made of several archives one after
//! another (early microcode first, say), each either a plain newc cpio
//! archive or a compressed stream of one, with zero bytes between them
//! for alignment. [`Unpacked`] reads such a file the same way and yields
//! every archive's bytes in order, the compressed ones decompressed: zstd
//! (what the `ramdisk` output writes by default) and gzip, the two kiln
//! writes. Another compression (xz, lz4…) is an error rather than bytes
//! silently left unsearched.

use std::io::{self, BufRead, Read};

/// The first bytes of a zstd frame.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The first bytes of a gzip member.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The magic of a newc cpio header without checksums (`070702`, with
/// them, is read too).
pub const NEWC_MAGIC: &[u8; 6] = b"070701";

/// The size of a newc header: the magic and 13 eight-digit hex numbers.
const NEWC_HEADER_BYTES: usize = 110;

/// The name of the entry that ends a cpio archive.
const CPIO_TRAILER: &[u8] = b"TRAILER!!!";

/// How each archive of an initramfs is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// A plain newc cpio archive.
    Cpio,
    /// A zstd stream.
    Zstd,
    /// A gzip stream.
    Gzip,
}

impl Segment {
    /// The kind of archive whose first bytes are `head`, if kiln reads it.
    pub fn detect(head: &[u8]) -> Option<Segment> {
        if head.starts_with(&ZSTD_MAGIC) {
            Some(Segment::Zstd)
        } else if head.starts_with(&GZIP_MAGIC) {
            Some(Segment::Gzip)
        } else if head.starts_with(NEWC_MAGIC) || head.starts_with(b"070702") {
            Some(Segment::Cpio)
        } else {
            None
        }
    }

    /// The name shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Segment::Cpio => "uncompressed",
            Segment::Zstd => "zstd",
            Segment::Gzip => "gzip",
        }
    }
}

/// The archives of an initramfs one after another, decompressed: what the
/// kernel unpacks into its rootfs.
#[derive(Debug)]
pub struct Unpacked<R: Read> {
    state: State<R>,
}

enum State<R: Read> {
    /// Between archives: zero padding, then the next one or the end.
    Between(Source<R>),
    Cpio(Cpio<R>),
    Zstd(zstd::stream::read::Decoder<'static, Source<R>>),
    Gzip(flate2::bufread::GzDecoder<Source<R>>),
    Done,
}

impl<R: Read> std::fmt::Debug for State<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Between(_) => "Between",
            State::Cpio(_) => "Cpio",
            State::Zstd(_) => "Zstd",
            State::Gzip(_) => "Gzip",
            State::Done => "Done",
        })
    }
}

impl<R: Read> Unpacked<R> {
    /// Reads the initramfs `inner`.
    pub fn new(inner: R) -> Unpacked<R> {
        Unpacked {
            state: State::Between(Source::new(inner)),
        }
    }
}

impl<R: Read> Read for Unpacked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            // Taken out so that a finished decoder can hand its input back;
            // an error leaves `Done`, ending the stream.
            self.state = match std::mem::replace(&mut self.state, State::Done) {
                State::Done => return Ok(0),
                State::Between(source) => next_segment(source)?,
                State::Cpio(mut cpio) => match cpio.read(buf)? {
                    0 => State::Between(cpio.source),
                    read => {
                        self.state = State::Cpio(cpio);
                        return Ok(read);
                    }
                },
                State::Zstd(mut decoder) => match decoder.read(buf)? {
                    0 => State::Between(decoder.finish()),
                    read => {
                        self.state = State::Zstd(decoder);
                        return Ok(read);
                    }
                },
                State::Gzip(mut decoder) => match decoder.read(buf)? {
                    0 => State::Between(decoder.into_inner()),
                    read => {
                        self.state = State::Gzip(decoder);
                        return Ok(read);
                    }
                },
            };
        }
    }
}

/// Skips the zero padding after an archive and starts reading the next.
fn next_segment<R: Read>(mut source: Source<R>) -> io::Result<State<R>> {
    loop {
        let available = source.fill_buf()?;
        if available.is_empty() {
            return Ok(State::Done);
        }
        let zeros = available.iter().take_while(|b| **b == 0).count();
        if zeros == 0 {
            break;
        }
        source.consume(zeros);
    }
    let offset = source.offset;
    let head = source.peek(NEWC_MAGIC.len())?;
    match Segment::detect(head) {
        Some(Segment::Cpio) => Ok(State::Cpio(Cpio::new(source))),
        // One frame at a time, so the decoder stops where the frame ends
        // and whatever follows is looked at here.
        Some(Segment::Zstd) => Ok(State::Zstd(
            zstd::stream::read::Decoder::with_buffer(source)?.single_frame(),
        )),
        Some(Segment::Gzip) => Ok(State::Gzip(flate2::bufread::GzDecoder::new(source))),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "at byte {offset}: neither a newc cpio archive nor a zstd or gzip stream \
                 (kiln reads only those)"
            ),
        )),
    }
}

/// One plain cpio archive passed through as it is, read entry by entry
/// only to find where it ends.
struct Cpio<R: Read> {
    source: Source<R>,
    /// The current entry's header and name, not yet passed on.
    pending: Vec<u8>,
    /// What is left of the current entry's data and padding.
    data_left: u64,
    /// Whether the trailer entry has been read.
    ended: bool,
}

impl<R: Read> Cpio<R> {
    fn new(source: Source<R>) -> Cpio<R> {
        Cpio {
            source,
            pending: Vec::new(),
            data_left: 0,
            ended: false,
        }
    }

    /// Reads the next entry's header and name into `pending`.
    fn next_entry(&mut self) -> io::Result<()> {
        let offset = self.source.offset;
        let mut header = vec![0u8; NEWC_HEADER_BYTES];
        self.source.read_exact(&mut header)?;
        let bad = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("at byte {offset}: a broken cpio header ({what})"),
            )
        };
        if Segment::detect(&header) != Some(Segment::Cpio) {
            return Err(bad("no newc magic"));
        }
        // The 13 numbers after the magic; the file size is the 7th, the
        // name's size (with its NUL) the 12th.
        let field = |index: usize| {
            let start = NEWC_MAGIC.len() + index * 8;
            std::str::from_utf8(&header[start..start + 8])
                .ok()
                .and_then(|digits| u64::from_str_radix(digits, 16).ok())
                .ok_or_else(|| bad("a field is not hexadecimal"))
        };
        let file_bytes = field(6)?;
        let name_bytes = usize::try_from(field(11)?).map_err(|_| bad("name too long"))?;
        if name_bytes == 0 || name_bytes > 1 << 16 {
            return Err(bad("name size out of range"));
        }
        // The name ends where the header and name, together, reach a
        // multiple of four; so does the data.
        let name_padded = (NEWC_HEADER_BYTES + name_bytes).next_multiple_of(4) - NEWC_HEADER_BYTES;
        let mut name = vec![0u8; name_padded];
        self.source.read_exact(&mut name)?;
        self.ended = name[..name_bytes - 1] == *CPIO_TRAILER;
        self.data_left = file_bytes.next_multiple_of(4);
        header.extend_from_slice(&name);
        self.pending = header;
        Ok(())
    }
}

impl<R: Read> Read for Cpio<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.pending.is_empty() {
                let count = buf.len().min(self.pending.len());
                buf[..count].copy_from_slice(&self.pending[..count]);
                self.pending.drain(..count);
                return Ok(count);
            }
            if self.data_left > 0 {
                let want = usize::try_from(self.data_left).unwrap_or(usize::MAX);
                let limit = buf.len().min(want);
                let read = self.source.read(&mut buf[..limit])?;
                if read == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                self.data_left -= read as u64;
                return Ok(read);
            }
            if self.ended {
                return Ok(0);
            }
            self.next_entry()?;
        }
    }
}

/// The bytes under every archive: a buffered reader that can also look
/// ahead a few bytes (to recognise an archive's magic) even across the
/// end of its buffer, and counts its position for messages.
struct Source<R: Read> {
    inner: R,
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
    /// Bytes consumed so far.
    offset: u64,
}

/// The buffer of [`Source`]: large reads, as zstd and gzip prefer.
const SOURCE_BUFFER_BYTES: usize = 256 << 10;

impl<R: Read> Source<R> {
    fn new(inner: R) -> Source<R> {
        Source {
            inner,
            buffer: vec![0u8; SOURCE_BUFFER_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            offset: 0,
        }
    }

    /// At least `count` bytes ahead (fewer only at the end of the input),
    /// without consuming them.
    fn peek(&mut self, count: usize) -> io::Result<&[u8]> {
        if self.end - self.start < count {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            while self.end < count {
                match self.inner.read(&mut self.buffer[self.end..]) {
                    Ok(0) => break,
                    Ok(read) => self.end += read,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(&self.buffer[self.start..self.end])
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let count = available.len().min(buf.len());
        buf[..count].copy_from_slice(&available[..count]);
        self.consume(count);
        Ok(count)
    }
}

impl<R: Read> BufRead for Source<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.start == self.end {
            self.start = 0;
            self.end = loop {
                match self.inner.read(&mut self.buffer) {
                    Ok(read) => break read,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                }
            };
        }
        Ok(&self.buffer[self.start..self.end])
    }

    fn consume(&mut self, amount: usize) {
        let amount = amount.min(self.end - self.start);
        self.start += amount;
        self.offset += amount as u64;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A newc archive of `files` (name, contents) and its trailer.
    pub(crate) fn newc(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut archive = Vec::new();
        let entries = files
            .iter()
            .map(|(name, data)| (*name, *data, 0o100_644))
            .chain([("TRAILER!!!", &b""[..], 0)]);
        for (ino, (name, data, mode)) in entries.enumerate() {
            let fields = [
                ino as u64 + 1,
                mode,
                0,
                0,
                1,
                0,
                data.len() as u64,
                0,
                0,
                0,
                0,
                name.len() as u64 + 1,
                0,
            ];
            archive.extend_from_slice(NEWC_MAGIC);
            for value in fields {
                archive.extend_from_slice(format!("{value:08X}").as_bytes());
            }
            archive.extend_from_slice(name.as_bytes());
            archive.push(0);
            while archive.len() % 4 != 0 {
                archive.push(0);
            }
            archive.extend_from_slice(data);
            while archive.len() % 4 != 0 {
                archive.push(0);
            }
        }
        archive
    }

    pub(crate) fn zstd(bytes: &[u8]) -> Vec<u8> {
        zstd::encode_all(bytes, 3).expect("zstd")
    }

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).expect("gzip");
        encoder.finish().expect("gzip")
    }

    fn unpacked(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Unpacked::new(bytes).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn each_kind_of_archive_is_read_back_as_it_was_written() {
        let archive = newc(&[("etc/hostname", b"web\n"), ("init", b"#!/bin/sh\n")]);
        assert_eq!(unpacked(&archive).expect("cpio"), archive);
        assert_eq!(unpacked(&zstd(&archive)).expect("zstd"), archive);
        assert_eq!(unpacked(&gzip(&archive)).expect("gzip"), archive);
    }

    #[test]
    fn concatenated_archives_are_read_one_after_another() {
        // Early microcode as plain cpio, padding, then the tree in two
        // zstd frames, two gzip members and a zstd frame again: every part
        // comes out, in order.
        let early = newc(&[("kernel/x86/microcode/GenuineIntel.bin", b"ucode")]);
        let parts: Vec<Vec<u8>> = (1..=5)
            .map(|i| newc(&[(&format!("etc/part{i}"), &vec![b'x'; i * 1000])]))
            .collect();
        let mut file = early.clone();
        file.extend([0u8; 512]);
        file.extend(zstd(&parts[0]));
        file.extend(zstd(&parts[1]));
        file.extend([0u8; 3]);
        file.extend(gzip(&parts[2]));
        file.extend(gzip(&parts[3]));
        file.extend(zstd(&parts[4]));
        file.extend([0u8; 8]);
        let expected = [vec![early], parts].concat().concat();
        assert_eq!(unpacked(&file).expect("read"), expected);
    }

    #[test]
    fn a_magic_split_by_the_buffer_is_still_recognised() {
        // The padding ends two bytes before the buffer does, so the next
        // archive's magic straddles a refill.
        let archive = newc(&[("a", b"x")]);
        let mut file = vec![0u8; SOURCE_BUFFER_BYTES - 2];
        file.extend(zstd(&archive));
        assert_eq!(unpacked(&file).expect("read"), archive);
    }

    #[test]
    fn unknown_or_broken_input_is_an_error() {
        let error = unpacked(b"\xfd7zXZ\0 an xz stream").expect_err("xz");
        assert!(error.to_string().contains("at byte 0"), "{error}");
        let archive = newc(&[("etc/hostname", b"web\n")]);
        let truncated = zstd(&archive);
        assert!(unpacked(&truncated[..truncated.len() - 4]).is_err());
        assert!(unpacked(&archive[..archive.len() - 20]).is_err());
        let mut junk = zstd(&archive);
        junk.extend_from_slice(b"junk");
        let error = unpacked(&junk).expect_err("junk after the archive");
        assert!(
            error
                .to_string()
                .contains(&format!("at byte {}", junk.len() - 4)),
            "{error}"
        );
    }

    #[test]
    fn segments_are_told_apart_by_their_first_bytes() {
        assert_eq!(Segment::detect(&ZSTD_MAGIC), Some(Segment::Zstd));
        assert_eq!(Segment::detect(&[0x1f, 0x8b, 8]), Some(Segment::Gzip));
        assert_eq!(Segment::detect(b"070701000"), Some(Segment::Cpio));
        assert_eq!(Segment::detect(b"070702000"), Some(Segment::Cpio));
        assert_eq!(Segment::detect(b"QFI\xfb"), None);
        assert_eq!(Segment::detect(b""), None);
    }
}
