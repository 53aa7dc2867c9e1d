use super::*;

fn record(kind: u8, id: u16, content: &[u8], padding: u8) -> Vec<u8> {
    let mut out = Header {
        kind,
        request_id: id,
        content_length: content.len() as u16,
        padding_length: padding,
    }
    .encode()
    .to_vec();
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0xee, padding as usize));
    out
}

fn end(id: u16, app: u32, proto: u8) -> Vec<u8> {
    let mut c = app.to_be_bytes().to_vec();
    c.extend_from_slice(&[proto, 0, 0, 0]);
    record(END_REQUEST, id, &c, 0)
}

/// The stdout and stderr bytes, and the end.
type Seen = (Vec<u8>, Vec<u8>, Option<EndRequest>);

/// Runs the deframer over `input` fed in pieces of `step` bytes.
fn run(input: &[u8], step: usize) -> Result<Seen, RecordError> {
    let mut d = Deframer::new(1);
    let (mut out, mut err, mut fin) = (Vec::new(), Vec::new(), None);
    for chunk in input.chunks(step.max(1)) {
        let mut at = 0;
        loop {
            let (used, piece) = d.step(&chunk[at..])?;
            let base = at;
            at += used;
            match piece {
                Piece::None => break,
                Piece::Stdout(r) => out.extend_from_slice(&chunk[base + r.start..base + r.end]),
                Piece::Stderr(r) => err.extend_from_slice(&chunk[base + r.start..base + r.end]),
                Piece::End(e) => fin = Some(e),
            }
        }
        assert_eq!(at, chunk.len());
    }
    Ok((out, err, fin))
}

#[test]
fn an_answer_reads_the_same_however_it_is_split() {
    let mut input = record(STDOUT, 1, b"Content-Type: text/plain\r\n\r\n", 4);
    input.extend(record(STDERR, 1, b"a warning", 7));
    input.extend(record(GET_VALUES_RESULT, 0, b"\x0e\x01FCGI_MPXS_CONNS0", 1));
    input.extend(record(STDOUT, 1, &[b'x'; 3000], 0));
    input.extend(record(STDOUT, 1, b"", 0));
    input.extend(record(STDERR, 1, b"", 0));
    input.extend(end(1, 7, REQUEST_COMPLETE));
    let mut body = b"Content-Type: text/plain\r\n\r\n".to_vec();
    body.extend([b'x'; 3000]);
    for step in [1, 2, 3, 7, 8, 9, 64, 4096, input.len()] {
        let (out, err, fin) = run(&input, step).unwrap();
        assert_eq!(out, body, "step {step}");
        assert_eq!(err, b"a warning");
        assert_eq!(
            fin,
            Some(EndRequest {
                app_status: 7,
                protocol_status: REQUEST_COMPLETE
            })
        );
    }
}

#[test]
fn stdout_content_may_be_moved_without_reading_it() {
    // The caller splices most of a record's content from the socket.
    let mut input = record(STDOUT, 1, &[b'y'; 100], 3);
    input.extend(end(1, 0, REQUEST_COMPLETE));
    let mut d = Deframer::new(1);
    assert_eq!(d.step(&input[..8]).unwrap(), (8, Piece::None));
    assert_eq!(d.stdout_left(), Some(100));
    d.skip_content(90);
    assert_eq!(d.stdout_left(), Some(10));
    let rest = &input[98..];
    assert_eq!(d.step(rest).unwrap(), (10, Piece::Stdout(0..10)));
    assert_eq!(d.stdout_left(), None);
    let (used, piece) = d.step(&rest[10..]).unwrap();
    assert_eq!(used, rest.len() - 10);
    assert!(matches!(piece, Piece::End(_)));
    assert!(d.is_done());
}

#[test]
fn what_a_client_must_not_accept() {
    let table: Vec<(Vec<u8>, RecordError)> = vec![
        (
            {
                let mut r = record(STDOUT, 1, b"x", 0);
                r[0] = 2;
                r
            },
            RecordError::Version(2),
        ),
        (
            record(STDOUT, 2, b"x", 0),
            RecordError::RequestId { got: 2, want: 1 },
        ),
        (
            record(BEGIN_REQUEST, 1, &[0; 8], 0),
            RecordError::UnexpectedType(BEGIN_REQUEST),
        ),
        (
            record(STDIN, 1, b"x", 0),
            RecordError::UnexpectedType(STDIN),
        ),
        (record(99, 1, b"", 0), RecordError::UnexpectedType(99)),
        (
            record(GET_VALUES, 0, b"", 0),
            RecordError::UnexpectedType(GET_VALUES),
        ),
        (
            record(END_REQUEST, 1, &[0; 4], 0),
            RecordError::BadEndRequest { len: 4 },
        ),
        (end(1, 0, OVERLOADED), RecordError::Refused(OVERLOADED)),
        (
            end(1, 0, CANT_MPX_CONN),
            RecordError::Refused(CANT_MPX_CONN),
        ),
        (
            {
                let mut r = end(1, 0, REQUEST_COMPLETE);
                r.extend(record(STDOUT, 1, b"late", 0));
                r
            },
            RecordError::AfterEnd,
        ),
    ];
    for (input, want) in table {
        for step in [1, input.len()] {
            assert_eq!(run(&input, step).err().as_ref(), Some(&want), "{input:?}");
        }
        assert!(!want.to_string().is_empty());
    }
}

#[test]
fn params_round_trip_across_records() {
    let long_value = vec![b'v'; 70_000];
    let pairs_in: Vec<(&[u8], &[u8])> = vec![
        (b"SCRIPT_FILENAME", b"/srv/www/index.php"),
        (b"QUERY_STRING", b""),
        (b"HTTP_X_LONG", &long_value),
        (&[b'n'; 200], b"short"),
    ];
    let mut out = Vec::new();
    params(3, pairs_in.iter().copied(), &mut out);
    // Put the stream back together from its records.
    let mut stream = Vec::new();
    let mut rest = &out[..];
    let mut records = 0;
    loop {
        let h = Header::decode(rest[..8].try_into().unwrap()).unwrap();
        assert_eq!((h.kind, h.request_id), (PARAMS, 3));
        let len = h.content_length as usize;
        assert_eq!((len + h.padding_length as usize) % 8, 0);
        stream.extend_from_slice(&rest[8..8 + len]);
        rest = &rest[8 + len + h.padding_length as usize..];
        records += 1;
        if len == 0 {
            break;
        }
    }
    assert!(rest.is_empty());
    assert!(records >= 3, "a 70 kB value spans records");
    assert_eq!(pairs(&stream).unwrap(), pairs_in);
    assert_eq!(
        pairs(&stream[..stream.len() - 1]),
        Err(RecordError::BadPairs)
    );
    assert_eq!(pairs(&[0x80, 0, 0]), Err(RecordError::BadPairs));
}

#[test]
fn requests_are_written_as_the_specification_lays_them_out() {
    assert_eq!(
        begin_request(0x0102, true),
        [1, 1, 1, 2, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    );
    assert_eq!(begin_request(1, false)[10], 0);
    assert_eq!(abort_request(9), [1, 2, 0, 9, 0, 0, 0, 0]);
    assert_eq!(
        stream_header(STDIN, 1, 0x1234),
        [1, 5, 0, 1, 0x12, 0x34, 0, 0]
    );
}

#[test]
fn the_send_path_goes_on_from_wherever_step_stopped() {
    let mut input = record(STDOUT, 1, b"Status: 200\r\n\r\nhead", 4);
    input.extend(record(STDERR, 1, b"warned", 2));
    input.extend(record(STDOUT, 1, &[b'x'; 5000], 0));
    input.extend(record(STDOUT, 1, b"", 0));
    input.extend(end(1, 0, REQUEST_COMPLETE));
    let mut want = b"Status: 200\r\n\r\nhead".to_vec();
    want.extend([b'x'; 5000]);
    for cut in 0..=input.len() {
        let mut d = Deframer::new(1);
        let mut out = Vec::new();
        let mut at = 0;
        let mut ended = false;
        while at < cut && !ended {
            let (used, piece) = d.step(&input[at..cut]).unwrap();
            match piece {
                Piece::Stdout(r) => out.extend_from_slice(&input[at..cut][r]),
                Piece::End(_) => ended = true,
                _ => {}
            }
            at += used;
        }
        let mut framing: &[u8] = &[];
        while !ended {
            match d.next(framing).unwrap() {
                Frame::Header(n) => {
                    framing = &input[at..at + n];
                    at += n;
                    continue;
                }
                Frame::Payload(n) => {
                    out.extend_from_slice(&input[at..at + n as usize]);
                    at += n as usize;
                }
                Frame::Skip(n) => at += n as usize,
                Frame::End => ended = true,
            }
            framing = &[];
        }
        assert_eq!(out, want, "cut at {cut}");
        assert_eq!(at, input.len(), "cut at {cut}");
    }
}
