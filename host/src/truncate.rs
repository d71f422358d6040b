//! Cutting texts that someone outside the platform chose (a step's hold reason, a reader's
//! User-Agent) to a size the platform chose, saying that they were cut.

/// Cuts `text` to `max` bytes at a character boundary and, when it was longer, says so.
pub fn cut_to(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let total = text.len();
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!("… [cut: {total} bytes in all]"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_stay_and_long_ones_are_cut_at_a_character() {
        assert_eq!(cut_to("short".into(), 10), "short");
        assert_eq!(cut_to("ééé".into(), 3), "é… [cut: 6 bytes in all]");
        assert!(cut_to("x".repeat(5000), 1024).starts_with(&"x".repeat(1024)));
    }
}
