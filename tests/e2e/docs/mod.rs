//! Documentation that cannot rot: every snippet and command in the docs (`snippets`), and the
//! example configuration and the generated reference (`example_config`).

mod example_config;
mod snippets;
