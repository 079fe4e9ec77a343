//! Building messages without `core::fmt`: in the wasm, formatting machinery (and every
//! `Display` impl a `format!` reaches) costs kilobytes for what a few pushes do.

/// Appends the decimal digits of `n`.
pub fn push_int(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    let mut digits = [0u8; 20];
    let mut rest = n.unsigned_abs();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// The decimal digits of `n`.
pub fn int(n: i64) -> String {
    let mut out = String::new();
    push_int(&mut out, n);
    out
}

/// The pieces, one after the other.
pub fn cat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.push_str(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_read_as_rust_writes_them() {
        for n in [0, 7, -7, 10, 1234567890, i64::MIN, i64::MAX, -1] {
            assert_eq!(int(n), n.to_string());
        }
        assert_eq!(cat(&["a", "", "bc"]), "abc");
    }
}
