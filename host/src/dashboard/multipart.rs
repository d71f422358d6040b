//! The fields of a `multipart/form-data` body (RFC 7578), as a browser sends a form with a
//! file input without any script: the plugin upload form. Only what browsers send is read:
//! each part's `Content-Disposition: form-data; name="..."` and its bytes as they are.

/// One field: its name and its content, borrowed from the body.
pub(super) type Field<'body> = (String, &'body [u8]);

/// Parts a form may have: the upload form has two.
const MAX_PARTS: usize = 16;

/// The boundary named by a `multipart/form-data` content type.
fn boundary(content_type: &str) -> Option<&str> {
    let mut parameters = content_type.split(';');
    let essence = parameters.next()?.trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parameters.find_map(|parameter| {
        let (key, value) = parameter.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim().trim_matches('"');
        // RFC 2046: 1 to 70 characters.
        (1..=70).contains(&value.len()).then_some(value)
    })
}

/// Where `needle` first starts in `haystack` at or after `from`: in time linear in the body,
/// whatever bytes a client sends (a naive scan costs the boundary's length at every CR).
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    memchr::memmem::find(haystack.get(from..)?, needle).map(|at| from + at)
}

/// The `name` of a part from its header block.
fn field_name(headers: &[u8]) -> Option<String> {
    let headers = std::str::from_utf8(headers).ok()?;
    let disposition = headers.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-disposition")
            .then_some(value)
    })?;
    let mut parameters = disposition.split(';');
    if !parameters.next()?.trim().eq_ignore_ascii_case("form-data") {
        return None;
    }
    parameters.find_map(|parameter| {
        let (key, value) = parameter.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("name")
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

/// The fields of `body`, or none when it is not a well-formed `multipart/form-data` body
/// of `content_type`.
pub(super) fn fields<'body>(content_type: &str, body: &'body [u8]) -> Option<Vec<Field<'body>>> {
    let delimiter = format!("--{}", boundary(content_type)?).into_bytes();
    // The first delimiter opens the body (a preamble before it is allowed and ignored).
    let mut at = if body.starts_with(&delimiter) {
        delimiter.len()
    } else {
        let mut between = b"\r\n".to_vec();
        between.extend_from_slice(&delimiter);
        find(body, &between, 0)? + between.len()
    };
    let mut next_delimiter = b"\r\n".to_vec();
    next_delimiter.extend_from_slice(&delimiter);
    let mut found = Vec::new();
    loop {
        let rest = body.get(at..)?;
        if rest.starts_with(b"--") {
            return Some(found);
        }
        if !rest.starts_with(b"\r\n") {
            return None;
        }
        let start = at + 2;
        let end = find(body, &next_delimiter, start)?;
        let part = &body[start..end];
        let split = find(part, b"\r\n\r\n", 0)?;
        let name = field_name(&part[..split])?;
        if found.len() == MAX_PARTS {
            return None;
        }
        found.push((name, &part[split + 4..]));
        at = end + next_delimiter.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPE: &str = "multipart/form-data; boundary=----WebKitFormBoundaryX1";

    #[test]
    fn a_browsers_form_with_a_binary_file_is_read_field_by_field() {
        let mut body = b"------WebKitFormBoundaryX1\r\n\
            Content-Disposition: form-data; name=\"csrf\"\r\n\r\n\
            token-1\r\n\
            ------WebKitFormBoundaryX1\r\n\
            Content-Disposition: form-data; name=\"component\"; filename=\"step.wasm\"\r\n\
            Content-Type: application/wasm\r\n\r\n"
            .to_vec();
        // Binary content with CR LF and a dash run that is not the delimiter.
        let file = b"\0asm\x01\0\0\0\r\n------WebKitFormBoundaryX2\r\n\xff".to_vec();
        body.extend_from_slice(&file);
        body.extend_from_slice(b"\r\n------WebKitFormBoundaryX1--\r\n");
        let fields = fields(TYPE, &body).unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0], ("csrf".to_string(), &b"token-1"[..]));
        assert_eq!(fields[1].0, "component");
        assert_eq!(fields[1].1, file);
    }

    #[test]
    fn bodies_that_are_not_well_formed_are_refused() {
        // Another content type, no boundary, an unclosed part, a part without a name.
        assert!(fields("application/x-www-form-urlencoded", b"a=b").is_none());
        assert!(fields("multipart/form-data", b"--x\r\n").is_none());
        let unclosed = b"------WebKitFormBoundaryX1\r\n\
            Content-Disposition: form-data; name=\"csrf\"\r\n\r\ntoken";
        assert!(fields(TYPE, unclosed).is_none());
        let nameless = b"------WebKitFormBoundaryX1\r\n\
            Content-Disposition: form-data\r\n\r\nx\r\n------WebKitFormBoundaryX1--";
        assert!(fields(TYPE, nameless).is_none());
        let quoted = "multipart/form-data; boundary=\"b\"";
        assert_eq!(
            fields(
                quoted,
                b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--b--"
            ),
            Some(vec![("a".to_string(), &b"1"[..])])
        );
    }
}
