//! `Accept-Encoding` (RFC 9110 §12.5.3): which content coding of those the
//! server has to offer the client prefers.
//!
//! The field is a list of codings with optional weights (`gzip;q=0.8`);
//! `*` stands for every coding not named; `q=0` refuses one. The highest
//! weight wins; at equal weights the order is br, zstd, gzip (the smaller
//! output first). `identity` is always acceptable to this server (it never
//! answers 406 for a representation it can send as it is).

/// A content coding iolite produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Coding {
    Br,
    Zstd,
    Gzip,
}

impl Coding {
    /// Every coding, in the order that wins at equal weights.
    pub const ALL: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    /// The token in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// The file name suffix of a pre-compressed sibling (nginx's
    /// `gzip_static`).
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Zstd => ".zst",
            Coding::Gzip => ".gz",
        }
    }

    /// A small number for keys (1, 2, 3; 0 is the identity).
    pub fn index(self) -> u8 {
        match self {
            Coding::Br => 1,
            Coding::Zstd => 2,
            Coding::Gzip => 3,
        }
    }
}

/// The coding of `offered` (in any order) that the field `accept` prefers,
/// or `None` for the identity (nothing offered is acceptable, or the field
/// is malformed: a server may then send the identity).
pub fn preferred(accept: &[u8], offered: &[Coding]) -> Option<Coding> {
    // Weights in thousandths: the named codings, then `*`.
    let mut named: [Option<u16>; 3] = [None; 3];
    let mut any: Option<u16> = None;
    for member in accept.split(|&b| b == b',') {
        let mut parts = member.split(|&b| b == b';');
        let token = trim(parts.next().unwrap_or_default());
        if token.is_empty() {
            continue;
        }
        let mut weight = 1000;
        for param in parts {
            let param = trim(param);
            if let Some(value) = param
                .strip_prefix(b"q=")
                .or_else(|| param.strip_prefix(b"Q="))
            {
                weight = parse_qvalue(trim(value))?;
            }
        }
        if token == b"*" {
            any = Some(weight);
            continue;
        }
        if let Some(coding) = Coding::ALL
            .into_iter()
            .find(|c| token.eq_ignore_ascii_case(c.token().as_bytes()))
        {
            let slot = &mut named[usize::from(coding.index() - 1)];
            // A coding named twice: the first weight stands.
            slot.get_or_insert(weight);
        } else if token.eq_ignore_ascii_case(b"x-gzip") {
            named[usize::from(Coding::Gzip.index() - 1)].get_or_insert(weight);
        }
    }
    let mut best: Option<(u16, Coding)> = None;
    for coding in Coding::ALL {
        if !offered.contains(&coding) {
            continue;
        }
        let Some(weight) = named[usize::from(coding.index() - 1)].or(any) else {
            continue;
        };
        if weight > 0 && best.is_none_or(|(w, _)| weight > w) {
            best = Some((weight, coding));
        }
    }
    best.map(|(_, coding)| coding)
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in
/// thousandths; `None` when malformed.
fn parse_qvalue(v: &[u8]) -> Option<u16> {
    let (whole, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        use Coding::*;
        let all = &Coding::ALL[..];
        let cases: &[(&str, &[Coding], Option<Coding>)] = &[
            ("", all, None),
            ("gzip", all, Some(Gzip)),
            ("gzip, deflate, br, zstd", all, Some(Br)),
            ("gzip, deflate, br, zstd", &[Gzip, Zstd], Some(Zstd)),
            ("gzip;q=1.0, br;q=0.5", all, Some(Gzip)),
            ("br;q=0, gzip", all, Some(Gzip)),
            ("br;q=0", all, None),
            ("*", all, Some(Br)),
            ("*;q=0.1, gzip;q=0.5", all, Some(Gzip)),
            ("*, br;q=0", all, Some(Zstd)),
            ("identity", all, None),
            ("GZIP", all, Some(Gzip)),
            ("x-gzip", all, Some(Gzip)),
            ("gzip ; q=0.001", all, Some(Gzip)),
            ("gzip;q=0.000", all, None),
            ("gzip;q=1.001", all, None),
            ("gzip;q=2", all, None),
            ("gzip;q=0.5x", all, None),
            ("gzip;q=", all, None),
            (" , ,gzip,,", all, Some(Gzip)),
            ("zstd;q=0.9, gzip;q=0.9, br;q=0.8", all, Some(Zstd)),
            ("br", &[Gzip], None),
            ("gzip;q=0.5, gzip;q=0", all, Some(Gzip)),
        ];
        for (field, offered, want) in cases {
            assert_eq!(preferred(field.as_bytes(), offered), *want, "{field:?}");
        }
    }
}
