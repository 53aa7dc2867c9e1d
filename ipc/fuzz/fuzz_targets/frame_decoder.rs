//! Feeds arbitrary bytes to the frame decoder as a receive stream, in
//! arbitrary chunk sizes, and decodes each payload as the envelope the probe
//! speaks. Nothing may panic, and no frame may exceed the limit.
#![no_main]

use iolite_ipc::frame::{self, Decoded, HEADER_LEN};
use iolite_ipc::probe::Probe;
use iolite_ipc::{Error, Wire};
use libfuzzer_sys::fuzz_target;

const MAX: u32 = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(step.max(1));
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    loop {
        match frame::decode(&buf, MAX) {
            Ok(Decoded::Frame { payload, consumed }) => {
                assert!(payload.len() <= MAX as usize);
                assert_eq!(consumed, payload.len() + HEADER_LEN);
                match frame::decode_payload::<Wire<Probe>>(payload) {
                    Ok(_) | Err(Error::Malformed(_)) => {}
                    Err(e) => panic!("unexpected payload error {e:?}"),
                }
                buf.drain(..consumed);
            }
            Ok(Decoded::Incomplete { needed }) => {
                assert!(needed > 0);
                if fed == stream.len() {
                    return;
                }
                let n = step.min(stream.len() - fed);
                buf.extend_from_slice(&stream[fed..fed + n]);
                fed += n;
            }
            Err(Error::WrongVersion { .. } | Error::Oversized { .. }) => return,
            Err(e) => panic!("unexpected frame error {e:?}"),
        }
    }
});
