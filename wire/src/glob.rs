//! Redis' glob patterns (KEYS, SCAN MATCH): `*`, `?`, `[abc]`, `[^a]`,
//! `[a-z]` and `\x`. Servers match [`Op::Scan`](crate::Op::Scan) patterns
//! with it, so it is part of the protocol (PROTOCOL.md 5.1).
//!
//! Matching is iterative with one saved `*` position (the classic two
//! pointer walk), so a pattern of `p` elements against a key of `n` bytes
//! costs at most `O(p * n)` steps: a hostile pattern such as `*a*a*a*b`
//! cannot make a server backtrack exponentially as a naive recursion would.

/// One element of a pattern and how many pattern bytes it took.
enum Elem<'a> {
    Star,
    Any,
    Class { negate: bool, body: &'a [u8] },
    Byte(u8),
}

fn next_elem(p: &[u8]) -> (Elem<'_>, usize) {
    match p {
        [b'*', ..] => (Elem::Star, 1),
        [b'?', ..] => (Elem::Any, 1),
        [b'[', rest @ ..] => {
            let (negate, start) = match rest.first() {
                Some(b'^') => (true, 1),
                _ => (false, 0),
            };
            let mut i = start;
            while i < rest.len() {
                match rest[i] {
                    b'\\' if i + 1 < rest.len() => i += 2,
                    b']' => {
                        return (
                            Elem::Class {
                                negate,
                                body: &rest[start..i],
                            },
                            1 + i + 1,
                        )
                    }
                    _ => i += 1,
                }
            }
            // An unclosed class takes the rest of the pattern (Redis too).
            (
                Elem::Class {
                    negate,
                    body: &rest[start.min(rest.len())..],
                },
                p.len(),
            )
        }
        [b'\\', x, ..] => (Elem::Byte(*x), 2),
        [x, ..] => (Elem::Byte(*x), 1),
        [] => unreachable!("called on a non-empty pattern"),
    }
}

fn class_has(body: &[u8], c: u8) -> bool {
    let mut i = 0;
    while i < body.len() {
        match body[i..] {
            [b'\\', x, ..] => {
                if x == c {
                    return true;
                }
                i += 2;
            }
            [lo, b'-', hi, ..] => {
                let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
                if (lo..=hi).contains(&c) {
                    return true;
                }
                i += 3;
            }
            [x, ..] => {
                if x == c {
                    return true;
                }
                i += 1;
            }
            [] => break,
        }
    }
    false
}

/// Does `text` match the glob `pattern` (Redis' `stringmatchlen`, case
/// sensitive)?
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // After the last `*` seen: where the pattern resumes, and the text
    // position that `*` has swallowed up to.
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() {
            let (elem, len) = next_elem(&pattern[p..]);
            let step = match elem {
                Elem::Star => {
                    star = Some((p + len, t));
                    p += len;
                    continue;
                }
                Elem::Any => t < text.len(),
                Elem::Class { negate, body } => {
                    t < text.len() && class_has(body, text[t]) != negate
                }
                Elem::Byte(b) => t < text.len() && text[t] == b,
            };
            if step {
                p += len;
                t += 1;
                continue;
            }
        } else if t == text.len() {
            return true;
        }
        // Mismatch: let the last `*` swallow one more byte, if it can.
        match star {
            Some((sp, st)) if st < text.len() => {
                star = Some((sp, st + 1));
                p = sp;
                t = st + 1;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn matches_as_redis_does() {
        for (p, t, want) in [
            ("*", "", true),
            ("*", "anything", true),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hallo", true),
            ("h[a-b]llo", "hcllo", false),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("[\\]]", "]", true),
            ("user:*:name", "user:42:name", true),
            ("user:*:name", "user:42:age", false),
            ("*a", "ba", true),
            ("a*", "ba", false),
            ("", "", true),
            ("", "x", false),
            ("k[", "k", false),
        ] {
            assert_eq!(glob_match(p.as_bytes(), t.as_bytes()), want, "{p} {t}");
        }
    }

    /// The plain recursive reading of the same rules (exponential on
    /// hostile patterns, fine on short ones): what the walk must agree with.
    fn reference(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|i| reference(rest, &text[i..])),
            Some((b'?', rest)) => !text.is_empty() && reference(rest, &text[1..]),
            Some((b'[', _)) => {
                let (elem, len) = super::next_elem(pattern);
                let super::Elem::Class { negate, body } = elem else {
                    unreachable!("a class")
                };
                !text.is_empty()
                    && super::class_has(body, text[0]) != negate
                    && reference(&pattern[len..], &text[1..])
            }
            Some((b'\\', rest)) if !rest.is_empty() => {
                text.first() == Some(&rest[0]) && reference(&rest[1..], &text[1..])
            }
            Some((c, rest)) => text.first() == Some(c) && reference(rest, &text[1..]),
        }
    }

    proptest::proptest! {
        #[test]
        fn the_walk_agrees_with_the_recursive_reading(
            pattern in proptest::collection::vec(proptest::sample::select(b"ab*?[]^-\\".to_vec()), 0..8),
            text in proptest::collection::vec(proptest::sample::select(b"ab]-".to_vec()), 0..8),
        ) {
            proptest::prop_assert_eq!(glob_match(&pattern, &text), reference(&pattern, &text));
        }
    }

    #[test]
    fn a_hostile_pattern_costs_polynomial_time() {
        let text = vec![b'a'; 4096];
        let pattern = b"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";
        let start = std::time::Instant::now();
        assert!(!glob_match(pattern, &text));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }
}
