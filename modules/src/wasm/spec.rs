//! [`WasmSpec`]: what the server tells a runner about the guest it hosts
//! (`--wasm`); a leaf, so the runner and the supervisor can both name it.

use std::time::Duration;

use iolite_sandbox::wasm::Limits;

use crate::error::Error;

/// The guest a runner hosts and the limits of its stores, as the server
/// passes them (`--wasm kind=wasi-http,memory=N,timeout_ms=N,instances=N,stack=N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmSpec {
    pub limits: Limits,
}

impl WasmSpec {
    /// `--wasm`'s value: every key present.
    pub fn to_arg(&self) -> String {
        let l = &self.limits;
        format!(
            "kind=wasi-http,memory={},timeout_ms={},instances={},stack={}",
            l.memory,
            l.timeout.as_millis(),
            l.instances,
            l.max_stack
        )
    }

    /// Parses [`WasmSpec::to_arg`]'s form; every key is required once.
    pub fn parse(arg: &str) -> Result<WasmSpec, Error> {
        let bad = |why: String| Error::Runner(format!("--wasm {arg:?}: {why}"));
        let mut values: [Option<&str>; 5] = [None; 5];
        const KEYS: [&str; 5] = ["kind", "memory", "timeout_ms", "instances", "stack"];
        for pair in arg.split(',') {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("{pair:?} is not key=value")))?;
            let i = KEYS
                .iter()
                .position(|k| *k == key)
                .ok_or_else(|| bad(format!("unknown key {key:?}")))?;
            if values[i].replace(value).is_some() {
                return Err(bad(format!("{key} given twice")));
            }
        }
        let num = |i: usize| -> Result<u64, Error> {
            let v = values[i].ok_or_else(|| bad(format!("{} missing", KEYS[i])))?;
            v.parse()
                .map_err(|_| bad(format!("{}: {v:?} is not a number", KEYS[i])))
        };
        match values[0] {
            Some("wasi-http") => {}
            Some(k) => return Err(bad(format!("kind {k:?} is not served"))),
            None => return Err(bad("kind missing".into())),
        }
        Ok(WasmSpec {
            limits: Limits {
                memory: num(1)?,
                timeout: Duration::from_millis(num(2)?),
                instances: u32::try_from(num(3)?).map_err(|_| bad("instances".into()))?,
                max_stack: usize::try_from(num(4)?).map_err(|_| bad("stack".into()))?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_round_trips_and_bad_ones_are_refused() {
        let spec = WasmSpec {
            limits: Limits {
                memory: 1 << 20,
                timeout: Duration::from_millis(1500),
                instances: 3,
                max_stack: 65536,
            },
        };
        let arg = spec.to_arg();
        assert_eq!(
            arg,
            "kind=wasi-http,memory=1048576,timeout_ms=1500,instances=3,stack=65536"
        );
        assert_eq!(WasmSpec::parse(&arg).unwrap(), spec);
        let table = [
            (arg.replace("kind=wasi-http", "kind=wagi"), "is not served"),
            (arg.replace(",stack=65536", ""), "stack missing"),
            (format!("{arg},memory=1"), "memory given twice"),
            (arg.replace("memory=1048576", "memory=x"), "is not a number"),
            (format!("{arg},fuel=1"), "unknown key"),
        ];
        for (bad, want) in table {
            let e = WasmSpec::parse(&bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
