//! Output tokens counted by evald when a server sends no usage: the o200k_base encoding
//! (tiktoken-rs), that of OpenAI's current models, for every model (evald does not ship each
//! model's own tokenizer; o200k_base is within a few per cent of Llama 3's and Qwen's counts
//! on English text, where counting stream chunks is off by the words per chunk). Records so
//! counted are marked `tokens_estimated`.

/// Tokens in `text` by o200k_base. The encoding's tables are read once per process (a few
/// tens of ms, the first time a server sends no usage).
pub fn count(text: &str) -> u32 {
    let n = tiktoken_rs::o200k_base_singleton()
        .encode_ordinary(text)
        .len();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Set once the encoding's tables are loaded.
static READY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// [`count`] from async code: loading the tables (the first time) or encoding a long text
/// happens on a blocking thread, not on a runtime thread where it would hold up the timers
/// and streams of every other request in flight.
pub async fn count_async(text: &str) -> u32 {
    use std::sync::atomic::Ordering;
    if READY.load(Ordering::Acquire) && text.len() < 16 * 1024 {
        return count(text);
    }
    let owned = text.to_string();
    let n = tokio::task::spawn_blocking(move || count(&owned))
        .await
        .unwrap_or_else(|_| count(text));
    READY.store(true, Ordering::Release);
    n
}

#[cfg(test)]
mod tests {
    #[test]
    fn words_are_counted_as_o200k_base_does() {
        assert_eq!(super::count(""), 0);
        // One token per common English word with its leading space.
        assert_eq!(super::count("Echo: the quick brown fox"), 6);
        assert!(super::count("ünïcödé text, 日本語も") > 4);
    }
}
