//! The codec request bodies are compressed with: the configured one, and the one to fall
//! back to once a receiver answers 415 to it (only when the setting left the choice to
//! sidelog).

use crate::compress::Codec;

/// The codec bodies are compressed with, and the one to use once a receiver refuses it.
pub(super) struct CodecChoice {
    current: std::sync::Mutex<Codec>,
    fallback: Option<Codec>,
}

impl CodecChoice {
    pub(super) fn new(codec: Codec, fallback: Option<Codec>) -> CodecChoice {
        CodecChoice {
            current: std::sync::Mutex::new(codec),
            fallback,
        }
    }

    pub(super) fn current(&self) -> Codec {
        *crate::lock(&self.current)
    }

    /// The receiver refused a body encoded with `codec` (415). True when there is another
    /// codec to use (from now on: the first refusal says so, once); false when the setting
    /// is explicit and must be obeyed.
    pub(super) fn refused(&self, codec: Codec) -> bool {
        let Some(fallback) = self.fallback.filter(|f| *f != codec) else {
            return false;
        };
        let mut current = crate::lock(&self.current);
        if *current != fallback {
            *current = fallback;
            tracing::warn!(
                refused = codec.content_encoding(),
                now = fallback.content_encoding(),
                "the intake cannot decode {}; sending {} from now on",
                codec.content_encoding(),
                fallback.content_encoding()
            );
        }
        true
    }
}
