//! [`Params`]: decoded `application/x-www-form-urlencoded` pairs, from a
//! query string or a form body (the `form_urlencoded` crate: `+` is a
//! space, `%XX` a byte, invalid UTF-8 becomes U+FFFD; a malformed escape
//! such as `%zz` is kept as it is, never an error).

use std::borrow::Cow;
use std::str::FromStr;

use iolite_ipc::Agg;

use crate::status::HttpError;

/// Decoded name–value pairs, in order; a name may repeat. Pairs borrow
/// from the request where nothing needed decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Params<'a> {
    /// Decodes `input` (a query string without `?`, or a form body).
    pub fn parse(input: &'a [u8]) -> Self {
        Params {
            pairs: form_urlencoded::parse(input).collect(),
        }
    }

    /// Decodes the bytes of `body`: in place when it is one slice (the
    /// usual case: a body the server read into one buffer), else gathered
    /// into one buffer first (a copy, counted in the runner's
    /// `iolite_ipc::copied::total`).
    pub fn from_body(body: &'a Agg) -> Self {
        match contiguous(body) {
            Some(bytes) => Self::parse(bytes),
            None => {
                let gathered = gather(body);
                Params {
                    pairs: form_urlencoded::parse(&gathered)
                        .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                        .collect(),
                }
            }
        }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    }

    /// The first value of `name`, or 400 saying it is missing.
    pub fn require(&self, name: &str) -> Result<&str, HttpError> {
        self.get(name)
            .ok_or_else(|| HttpError::bad_request(format!("{name} is missing")))
    }

    /// The first value of `name` parsed as a `T` (`None` when absent), or
    /// 400 saying it is not one.
    pub fn parse_value<T: FromStr>(&self, name: &str) -> Result<Option<T>, HttpError> {
        self.get(name)
            .map(|v| {
                v.parse().map_err(|_| {
                    HttpError::bad_request(format!("{name}: {v:?} is not a valid value"))
                })
            })
            .transpose()
    }

    /// Every pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// How many pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// The bytes of `body` when they are one slice (or none) that this process
/// may view in place.
pub(crate) fn contiguous(body: &Agg) -> Option<&[u8]> {
    match body.bufs() {
        [] => Some(&[]),
        [one] => one.try_as_slice(),
        _ => None,
    }
}

/// The bytes of `body` in one buffer, counted as copied.
pub(crate) fn gather(body: &Agg) -> Vec<u8> {
    // copy_to_vec adds what it copies to iolite_ipc's counter.
    body.copy_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::agg;
    use iolite_ipc::Pool;

    #[test]
    fn decoding_table() {
        // (input, pairs)
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("a=1", &[("a", "1")]),
            ("a=1&b=2&a=3", &[("a", "1"), ("b", "2"), ("a", "3")]),
            ("name=J%C3%B6rg+M%C3%BCller", &[("name", "Jörg Müller")]),
            ("q=a%2Bb%26c%3Dd", &[("q", "a+b&c=d")]),
            ("flag", &[("flag", "")]),
            ("=v", &[("", "v")]),
            ("a=1&&b=", &[("a", "1"), ("b", "")]),
            ("bad=%zz%4", &[("bad", "%zz%4")]),
            ("bad=%ff%fe", &[("bad", "\u{fffd}\u{fffd}")]),
            ("a=b=c", &[("a", "b=c")]),
            ("sp=%20+%20", &[("sp", "   ")]),
        ];
        for (input, want) in cases {
            let p = Params::parse(input.as_bytes());
            assert_eq!(p.iter().collect::<Vec<_>>(), *want, "{input:?}");
            assert_eq!(p.len(), want.len());
        }
    }

    #[test]
    fn lookups_and_typed_values() {
        let p = Params::parse(b"n=5&n=6&x=abc&e=");
        assert_eq!(p.get("n"), Some("5"));
        assert_eq!(p.get_all("n").collect::<Vec<_>>(), ["5", "6"]);
        assert_eq!(p.get("none"), None);
        assert_eq!(p.require("x").unwrap(), "abc");
        assert_eq!(p.require("none").unwrap_err().status(), 400);
        assert_eq!(p.parse_value::<u32>("n").unwrap(), Some(5));
        assert_eq!(p.parse_value::<u32>("none").unwrap(), None);
        let e = p.parse_value::<u32>("x").unwrap_err();
        assert_eq!(
            (e.status(), e.message()),
            (400, "x: \"abc\" is not a valid value")
        );
        assert_eq!(p.parse_value::<u32>("e").unwrap_err().status(), 400);
        assert!(Params::parse(b"").is_empty());
    }

    #[test]
    fn a_body_in_one_slice_is_read_in_place_and_one_in_several_gathered() {
        let pool = Pool::new(1 << 20).unwrap();
        let one = agg(&pool, &[b"who=ann+b&msg=hi%21"]);
        let before = iolite_ipc::copied::total();
        let p = Params::from_body(&one);
        assert_eq!(p.get("msg"), Some("hi!"));
        // "ann b" needed decoding (owned); "msg" borrowed from the pool.
        assert!(matches!(p.pairs[1].0, Cow::Borrowed(_)));
        // Split inside a name, inside an escape and at the separator.
        let split = agg(&pool, &[b"wh", b"o=ann+b&msg=hi%", b"2", b"1&", b"x"]);
        let q = Params::from_body(&split);
        assert_eq!(
            q.iter().collect::<Vec<_>>(),
            [("who", "ann b"), ("msg", "hi!"), ("x", "")]
        );
        // Only the gathered body was copied (other tests may copy too).
        assert!(iolite_ipc::copied::total() >= before + split.len() as u64);
        assert!(Params::from_body(&Agg::new()).is_empty());
    }
}
